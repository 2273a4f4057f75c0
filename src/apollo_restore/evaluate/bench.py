"""`apollo bench`: speed, memory and compute efficiency of a model configuration on this machine.

Per (model, device), in a fresh process so memory readings belong to that model alone:

- the paper's RTF protocol: one second of 44.1 kHz audio (mono by default) through ``model.forward``, mean
  wall time of N iterations after warm-up (RTF = seconds of compute per second of audio);
- long inputs: stereo clips (10 s and 60 s by default) through the block-wise ``Restorer`` (what
  ``apollo restore`` runs), one timed pass each;
- peak memory of each phase (CPU: resident set size sampled every 2 ms; CUDA: the allocator's peak);
- minor page faults per 1 s forward (CPU: buffers the allocator hands back to the kernel and faults in
  again each pass; see docs/evaluation.md for what they cost here);
- parameters, FLOPs of the 1 s forward (``torch.utils.flop_counter``: matmuls, convolutions, attention),
  achieved GFLOP/s, and that as a fraction of a large fp32 matmul timed in the same process.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from apollo_restore.checkpoint import load_checkpoint
from apollo_restore.errors import ApolloError
from apollo_restore.export import OnnxApollo, export_onnx
from apollo_restore.inference import Restorer, keep_freed_memory, pick_device
from apollo_restore.model import Apollo, ApolloConfig
from apollo_restore.precision import resolve_precision

try:
    import resource  # POSIX: page faults and the lifetime peak RSS
except ImportError:  # pragma: no cover - Windows
    resource = None

#: square fp32 matmul size used as the machine's reachable GFLOP/s (a quarter of it for bf16/fp16, which an AVX2 CPU
#: runs through conversions, ~100x slower)
MATMUL_SIZE = 2048


@dataclass(frozen=True)
class BenchConfig:
    """What to run: a model ``size`` (``"256x6"``) or a ``checkpoint``, on one ``device``."""

    size: str | None = None
    checkpoint: str | None = None
    device: str = "cpu"
    iterations: int = 10
    warmup: int = 2
    channels: int = 1
    long_seconds: tuple[float, ...] = (10.0, 60.0)
    threads: int | None = None
    block_seconds: float | None = None  # None: inference.auto_block_seconds
    precision: str = "fp32"
    engine: str = "torch"

    @property
    def label(self) -> str:
        model = self.size or f"checkpoint:{self.checkpoint or 'default'}"
        return f"{model} {self.precision}" + ("" if self.engine == "torch" else f" {self.engine}")


@dataclass
class BenchResult:
    """Measurements of one (model, device); times in seconds, memory in MiB, RTF = compute s / audio s."""

    label: str
    device: str
    threads: int
    params: int
    channels: int
    rtf_mean: float
    rtf_std: float
    iterations: int
    peak_mb_1s: float
    gflop_per_second_of_audio: float
    achieved_gflops: float
    matmul_gflops: float
    page_faults_per_iter: float = math.nan
    long: list[dict] = field(default_factory=list)

    @property
    def fraction_of_matmul(self) -> float:
        return self.achieved_gflops / self.matmul_gflops if self.matmul_gflops > 0 else math.nan

    def to_dict(self) -> dict:
        return {**asdict(self), "fraction_of_matmul": self.fraction_of_matmul}


class PeakMemory:
    """Peak memory (MiB) while the block runs: CUDA allocator peak, or resident set size sampled in a thread
    (Linux ``/proc``; elsewhere the process's lifetime peak from ``getrusage``)."""

    def __init__(self, device):
        self.device = device
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:  # no /proc: the lifetime peak (KiB on Linux)
            return math.nan if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_mb = self.rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self.rss_mb())


def _minor_faults() -> float:
    """Minor page faults of this process so far (NaN where ``resource`` is missing)."""
    if resource is None:
        return math.nan
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model, audio, iterations: int, warmup: int = 0) -> list[float]:
    """Wall seconds of each of ``iterations`` passes of ``model(audio)`` after ``warmup`` untimed ones."""
    times = []
    with torch.inference_mode():
        for index in range(warmup + iterations):
            _sync(audio.device)
            start = time.perf_counter()
            model(audio)
            _sync(audio.device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return times


def paper_rtf(model, device, iterations: int = 5, warmup: int = 1) -> float:
    """Mean seconds to process one second of mono audio at the model's rate (the paper's RTF protocol)."""
    audio = torch.from_numpy(_test_signal(1, model.config.sample_rate))[None].to(device)
    return float(np.mean(time_forward(model, audio, iterations, warmup)))


def matmul_gflops(device, size: int = MATMUL_SIZE, iterations: int = 5, dtype=None) -> float:
    """GFLOP/s of a ``size`` x ``size`` matmul (fp32 unless ``dtype``) on ``device``: the best of ``iterations``
    after a warm-up, i.e. what this machine's BLAS reaches on a large matmul when it gets the cores."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    best = math.inf
    for _ in range(iterations):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one scaled-dot-product attention call from its tensor shapes (torch's formula)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_flop_formulas() -> dict:
    """Formulas torch's FLOP counter lacks, for one count only (its global registry is left alone): the CPU
    flash-attention kernel, counted as torch counts the GPU ones."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _attention_flop}


def count_flops(model, audio) -> int:
    """FLOPs of ``model(audio)`` (audio ``[batch, channels, samples]``): matmuls, convolutions, attention."""
    counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    with torch.inference_mode(), counter:
        model(audio)
    return int(counter.get_total_flops())


def _load(config: BenchConfig):
    """(model, its gate or None): a random model of ``config.size`` or the checkpoint's."""
    if config.size is not None:
        return Apollo(ApolloConfig.from_size(config.size)).eval(), None
    return load_checkpoint(config.checkpoint)


def _test_signal(channels: int, samples: int, seed: int = 0) -> np.ndarray:
    """Peak-normalised noise ``[channels, samples]``; the model's cost does not depend on content."""
    audio = np.random.default_rng(seed).standard_normal((channels, samples)).astype(np.float32)
    return audio / np.abs(audio).max()


def run_bench(config: BenchConfig) -> BenchResult:
    """Measure one (model, device) in this process (see module docstring)."""
    if config.iterations < 1 or config.warmup < 0:
        raise ApolloError("bench needs at least 1 iteration and a non-negative warm-up")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    if device.type == "cpu":  # what `apollo restore` runs with (Restorer): the 1 s forwards too
        keep_freed_memory()
    model, gate = _load(config)
    model = model.to(device)
    sr = model.config.sample_rate
    x = torch.from_numpy(_test_signal(config.channels, sr))[None].to(device)  # [1, channels, sr]: 1 s
    flops = count_flops(model, x)
    dtype = resolve_precision(config.precision, device)
    params = model.num_parameters()  # int8 layers hold packed weights, not parameters
    model = _engine(model, config.engine, device) if dtype == torch.float32 else model.with_precision(dtype)
    time_forward(model, x, 0, config.warmup)
    faults_before = _minor_faults()
    with PeakMemory(device) as memory:
        times = time_forward(model, x, config.iterations)
    faults = (_minor_faults() - faults_before) / config.iterations
    mean = float(np.mean(times))
    restorer = Restorer(model, device, config.block_seconds, gate)
    long = []
    for seconds in config.long_seconds:
        audio = _test_signal(2, round(seconds * sr), seed=1)
        with PeakMemory(device) as peak:
            _sync(device)
            start = time.perf_counter()
            restorer.restore_array(audio, sr)
            _sync(device)
            elapsed = time.perf_counter() - start
        long.append({"seconds": seconds, "channels": 2, "wall_s": elapsed, "rtf": elapsed / seconds,
                     "peak_mb": peak.peak_mb})
    return BenchResult(
        label=config.label, device=str(device), threads=torch.get_num_threads(), params=params,
        channels=config.channels, rtf_mean=mean, rtf_std=float(np.std(times)), iterations=config.iterations,
        peak_mb_1s=memory.peak_mb, gflop_per_second_of_audio=flops / 1e9, achieved_gflops=flops / mean / 1e9,
        matmul_gflops=_matmul_baseline(device, dtype),
        page_faults_per_iter=faults, long=long,
    )


def _matmul_baseline(device, dtype: torch.dtype) -> float:
    """The matmul rate a row is compared with: 2048^2 in fp32 (int8 rows too: their non-linear work and
    quantisation run in float32), 512^2 in bf16/fp16 (slow without matrix units)."""
    if dtype in (torch.float32, torch.qint8):
        return matmul_gflops(device, MATMUL_SIZE)
    return matmul_gflops(device, MATMUL_SIZE // 4, dtype=dtype)


def _engine(model, engine: str, device):
    """``model`` itself (torch) or its network exported to ONNX and run by onnxruntime (CPU)."""
    if engine == "torch":
        return model
    if engine != "onnx" or device.type != "cpu":
        raise ApolloError(f"engine {engine!r} on {device.type}: use torch, or onnx on the CPU")
    with tempfile.TemporaryDirectory(prefix="apollo-bench-") as tmp:
        return OnnxApollo(export_onnx(model, Path(tmp) / "network.onnx"))


def run_isolated(config: BenchConfig) -> BenchResult:
    """:func:`run_bench` in a fresh spawned process, so its memory readings are its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_bench, config).result()


def format_table(results: list[BenchResult]) -> str:
    """Human-readable table of several results (one line each)."""
    long_cols = sorted({entry["seconds"] for r in results for entry in r.long})
    header = ["model", "device", "thr", "params (M)", "GFLOP/s-audio", "RTF 1 s", "peak MiB 1 s"]
    header += [f"RTF {s:g} s st." for s in long_cols] + [f"peak MiB {s:g} s" for s in long_cols]
    header += ["GFLOP/s", "matmul GFLOP/s", "of matmul", "faults/iter"]
    lines = [header]
    for r in results:
        by_len = {entry["seconds"]: entry for entry in r.long}
        row = [r.label, r.device, str(r.threads), f"{r.params / 1e6:.2f}", f"{r.gflop_per_second_of_audio:.1f}",
               f"{r.rtf_mean:.3f}±{r.rtf_std:.3f} (n={r.iterations})", f"{r.peak_mb_1s:.0f}"]
        row += [f"{by_len[s]['rtf']:.3f}" if s in by_len else "–" for s in long_cols]
        row += [f"{by_len[s]['peak_mb']:.0f}" if s in by_len else "–" for s in long_cols]
        row += [f"{r.achieved_gflops:.1f}", f"{r.matmul_gflops:.1f}", f"{100 * r.fraction_of_matmul:.0f}%",
                f"{r.page_faults_per_iter:.0f}"]
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
