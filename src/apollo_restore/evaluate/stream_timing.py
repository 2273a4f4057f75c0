"""Timing of a stream: `run_stream` feeds a `streaming.StreamingRestorer` chunk by chunk and measures each call.

Per frame: the wall time and the process's CPU time (all threads; other jobs on a busy machine do not inflate
it). Per chunk: how late its output was on a simulated real-time clock. `apollo stream` prints the
:meth:`StreamStats.summary` on stderr; the engine itself (`apollo_restore.streaming`) keeps no clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from apollo_restore.streaming import StreamingRestorer


@dataclass(frozen=True)
class StreamStats:
    """Timing of one stream.

    ``frame_ms``: compute per frame for each call that computed frames (call time / frames). ``frame_cpu_ms``:
    the same in CPU time of the process (all threads), which other jobs on a busy machine do not inflate.
    ``lag_ms``: for each chunk, how long after its last sample arrived its output was ready, on a simulated
    real-time clock (a chunk arrives when its last sample would in real time; a call starts when its chunk has
    arrived and the previous call has finished).
    """

    samples: int
    sample_rate: int
    channels: int
    chunk_ms: float
    hop_ms: float
    latency_ms: float
    frame_ms: tuple[float, ...]
    frame_cpu_ms: tuple[float, ...]
    lag_ms: tuple[float, ...]
    compute_s: float

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    @property
    def rtf(self) -> float:
        """Compute time / audio duration (< 1: faster than real time)."""
        return self.compute_s / max(self.seconds, 1e-12)

    @property
    def late_chunks(self) -> int:
        """Chunks whose output was ready more than one chunk after they arrived (a one-chunk buffer underruns)."""
        return sum(lag > self.chunk_ms for lag in self.lag_ms)

    def summary(self) -> str:
        """Multi-line report for stderr."""
        frames = np.asarray(self.frame_ms) if self.frame_ms else np.zeros(1)
        cpu = np.asarray(self.frame_cpu_ms) if self.frame_cpu_ms else np.zeros(1)
        worst = max(self.lag_ms, default=0.0)
        return "\n".join([
            f"streamed {self.seconds:.2f} s, {self.channels} ch, {len(self.lag_ms)} chunks of {self.chunk_ms:.2f} ms",
            f"compute per frame: median {np.median(frames):.2f} ms, p95 {np.percentile(frames, 95):.2f} ms, "
            f"p99 {np.percentile(frames, 99):.2f} ms, max {frames.max():.2f} ms ({len(self.frame_ms)} calls; one frame "
            f"is {self.hop_ms:.2f} ms of audio)",
            f"CPU time per frame: median {np.median(cpu):.2f} ms, p95 {np.percentile(cpu, 95):.2f} ms, "
            f"p99 {np.percentile(cpu, 99):.2f} ms",
            f"real-time factor: {self.rtf:.3f} (compute {self.compute_s:.2f} s / audio {self.seconds:.2f} s)",
            f"latency: {self.latency_ms:.2f} ms algorithmic + up to {self.chunk_ms:.2f} ms chunking "
            f"+ {worst:.2f} ms worst compute/queueing = {self.latency_ms + self.chunk_ms + worst:.2f} ms worst case",
            f"late chunks (simulated real time): {self.late_chunks} of {len(self.lag_ms)}",
        ])


def run_stream(engine: StreamingRestorer, chunks: Iterable[np.ndarray], sink: Callable[[np.ndarray], None],
               chunk_ms: float) -> StreamStats:
    """Feed ``chunks`` (``[channels, n]`` each) through ``engine``, pass every output block to ``sink``, flush,
    and time each call (see :class:`StreamStats`). Only ``engine`` calls are timed, not reading or writing."""
    frame_ms: list[float] = []
    frame_cpu_ms: list[float] = []
    lag_ms: list[float] = []
    samples = compute = clock = 0.0
    channels = 0
    for chunk in chunks:
        before = engine.frames_done
        started, cpu_started = time.perf_counter(), time.process_time()
        out = engine.process(chunk)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        compute += elapsed
        samples += chunk.shape[1]
        channels = chunk.shape[0]
        if engine.frames_done > before:
            frame_ms.append(1000.0 * elapsed / (engine.frames_done - before))
            frame_cpu_ms.append(1000.0 * cpu / (engine.frames_done - before))
        arrived = 1000.0 * samples / engine.sample_rate  # when the chunk's last sample came in
        clock = max(clock, arrived) + 1000.0 * elapsed
        lag_ms.append(clock - arrived)
        if out.shape[1]:
            sink(out)
    started = time.perf_counter()
    tail = engine.flush()
    compute += time.perf_counter() - started
    if tail.shape[1]:
        sink(tail)
    hop_ms = 1000.0 * engine.framing.hop / engine.sample_rate
    return StreamStats(int(samples), engine.sample_rate, channels, chunk_ms, hop_ms, engine.latency_ms,
                       tuple(frame_ms), tuple(frame_cpu_ms), tuple(lag_ms), compute)
