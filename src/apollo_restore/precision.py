"""Numeric precision of inference: ``fp32``, ``bf16``, ``fp16``, ``int8``, or ``auto`` (chosen per device, measured).

Reduced precision applies to the network only (`Apollo.with_precision`): the STFT, the gain-shape features,
the head's output and the residual sum stay float32. ``int8`` (CPU only, never chosen by ``auto``: it changes
the output more than bf16) is dynamic quantisation of the band transformers' and temporal convolutions'
linear layers: int8 weights, activations quantised per call, int32 accumulation, float32 everywhere else
(band split and merge, norms, attention, convolutions). ``auto``:

- CUDA: bf16 where the GPU supports it, else fp16 (tensor cores run both; fp16 has the smaller range);
- CPU: bf16 only where the CPU has bf16 matrix units (AMX tiles or AVX-512 BF16) *and* a model-shaped bf16
  matmul measures at least ``AUTO_MIN_SPEEDUP`` times faster than fp32 here; else fp32. Without those units
  (e.g. AVX2-only CPUs such as the AMD EPYC this project is developed on) bf16 runs through conversions, slower
  than fp32, so ``auto`` never measures it there;
- other devices: fp32.

Any precision runs on any device (bf16 and fp16 on an AVX2 CPU are correct, only slow).
"""

from __future__ import annotations

import time

import torch

from apollo_restore.errors import ApolloError

#: ``torch.qint8`` stands for int8 dynamic quantisation of the linear layers (activations stay float32)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.qint8}
PRECISIONS = ("auto", *DTYPES)
#: bf16 must beat fp32 by this much on a model-shaped matmul for ``auto`` to pick it on a CPU
AUTO_MIN_SPEEDUP = 1.3


def cpu_has_bf16_matmul() -> bool:
    """True where the CPU has bf16 matrix instructions (Intel AMX tiles or AVX-512 BF16)."""
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def matmul_speedup(dtype: torch.dtype, device: torch.device, rows: int = 4096, dim: int = 256,
                   iterations: int = 3) -> float:
    """How many times faster a ``[rows, dim] x [dim, 8 dim]`` matmul (the FFN's shape) runs in ``dtype`` than in
    fp32 on ``device`` (best of ``iterations`` each, interleaved)."""
    a = torch.randn(rows, dim, device=device)
    b = torch.randn(dim, 8 * dim, device=device)
    pairs = {torch.float32: (a, b), dtype: (a.to(dtype), b.to(dtype))}
    best = {key: float("inf") for key in pairs}
    for _ in range(iterations + 1):  # the first round warms up
        for key, (x, y) in pairs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            torch.mm(x, y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[key] = min(best[key], time.perf_counter() - start)
    return best[torch.float32] / best[dtype]


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The dtype that precision ``name`` means on ``device`` (see module docstring)."""
    if name not in PRECISIONS:
        raise ApolloError(f"unknown precision {name!r} (use {', '.join(PRECISIONS)})")
    if name == "int8":
        if device.type != "cpu":
            raise ApolloError(f"int8 runs on the CPU only (use --device cpu, or bf16/fp16 on {device.type})")
        if not set(torch.backends.quantized.supported_engines) & {"x86", "fbgemm", "qnnpack"}:
            raise ApolloError("this torch build has no int8 CPU kernels (fbgemm/qnnpack): use fp32")
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16_matmul() and matmul_speedup(torch.bfloat16, device) >= AUTO_MIN_SPEEDUP:
        return torch.bfloat16
    return torch.float32


def precision_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)
