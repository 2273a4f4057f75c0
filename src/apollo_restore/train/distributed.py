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

from apollo_restore.inference import pick_device


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


def init_distributed(device_name: str = "auto") -> DistributedContext:
    """Join the torchrun process group if there is one; returns this process's context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
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
