"""Process group set-up for torchrun / DDP, and the device each process uses.

Under ``torchrun --nproc_per_node=N`` (any number of nodes) the environment holds ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; each process joins the group (NCCL on CUDA, gloo on CPU) and, on CUDA, takes the GPU of
its local rank. Without those variables everything runs in one process and the helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from apollo_restore.errors import ApolloError


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is: ``rank`` of ``world_size`` processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` means this process's local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ApolloError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ApolloError(f"device '{name}' requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_distributed(device_name: str = "auto") -> DistributedContext:
    """Join the torchrun process group if there is one; returns this process's context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over all processes (a copy; the input is left alone)."""
    values = values.clone()
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any of them (used to stop all ranks together)."""
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every process."""
    if not dist.is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj: object) -> list[object]:
    """``obj`` of every process, in rank order (on every process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
