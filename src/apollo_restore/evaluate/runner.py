"""Run an evaluation: restore with each checkpoint, score every (example, system) in parallel, cache results.

Output folder layout::

    OUT/restored/<system>/<id>.wav     restored audio (float WAV), kept for listening and resuming
    OUT/restored/<system>/source.json  which checkpoint (sha256) made them
    OUT/cache.jsonl                    one scored (example, system) per line, appended as they finish

A rerun skips restored files that exist and scores whose fingerprint (file sizes and times, metric
settings) is unchanged, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from apollo_restore.errors import ApolloError
from apollo_restore.evaluate.sources import EvalSet

#: system name of the unprocessed degraded input (the baseline row)
INPUT_SYSTEM = "input"
CACHE_FILE = "cache.jsonl"
RESTORED_DIR = "restored"
#: bump when a metric's definition changes, so cached scores are recomputed
METRIC_VERSION = 3
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one `apollo evaluate` run."""

    out_dir: Path
    checkpoints: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    device: str | None = None  # None: CUDA when present, else CPU
    jobs: int = 1
    visqol: bool = True
    block_seconds: float | None = None  # None: inference.auto_block_seconds
    precision: str = "fp32"  # of the checkpoints' networks (apollo_restore.precision)
    rtf_iterations: int = 5  # 1 s forwards timed per checkpoint for Table II's RTF column (0: skip)
    progress: bool = True


@dataclass(frozen=True)
class ScoreJob:
    """Score ``estimate`` against ``reference``; ``degraded`` sets the codec cut-off of LSD-HF."""

    example_id: str
    system: str
    reference: Path
    degraded: Path
    estimate: Path
    meta: dict
    visqol: bool

    @property
    def fingerprint(self) -> str:
        parts = [str(METRIC_VERSION), str(self.visqol)]
        for path in (self.reference, self.degraded, self.estimate):
            stat = path.stat()
            parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _read_at(path: Path, sample_rate: int | None) -> tuple:
    from apollo_restore.audio import read_audio, resample

    audio, sr = read_audio(path)
    return (audio, sr) if sample_rate is None else (resample(audio, sr, sample_rate), sample_rate)


def _fit(audio, length: int, path: Path):
    """Crop a longer estimate's tail; a shorter one cannot be aligned."""
    if audio.shape[1] < length:
        raise ApolloError(f"{path}: {audio.shape[1]} samples, shorter than its reference ({length})")
    return audio[:, :length]


def score_job(job: ScoreJob) -> dict:
    """One result row: the job's metadata, the codec cut-off and every metric (runs in a worker process)."""
    from apollo_restore.evaluate import metrics

    reference, sr = _read_at(job.reference, None)
    degraded = _fit(_read_at(job.degraded, sr)[0], reference.shape[1], job.degraded)
    estimate = _fit(_read_at(job.estimate, sr)[0], reference.shape[1], job.estimate)
    if estimate.shape[0] != reference.shape[0]:
        raise ApolloError(f"{job.estimate}: {estimate.shape[0]} channel(s), reference has {reference.shape[0]}")
    try:
        cutoff = metrics.codec_cutoff_hz(reference, degraded, sr)
        which = metrics.METRICS if job.visqol else tuple(m for m in metrics.METRICS if m != "visqol")
        values = metrics.score(reference, estimate, sr, cutoff, which)
    except ApolloError as error:
        raise ApolloError(f"{job.example_id} ({job.system}): {error}") from None
    return {"id": job.example_id, "system": job.system, **job.meta, "cutoff_hz": round(cutoff, 1),
            "seconds": round(reference.shape[1] / sr, 3), **values, "fingerprint": job.fingerprint}


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Worker processes spawned inside get one BLAS/numba thread each (the pool is the parallelism)."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARS}
    os.environ.update(dict.fromkeys(_THREAD_VARS, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _read_cache(path: Path) -> dict[tuple[str, str], dict]:
    rows: dict[tuple[str, str], dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[(row["id"], row["system"])] = row
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupted run
    return rows


def run_scoring(jobs: list[ScoreJob], cache_path: Path, workers: int = 1, progress: bool = True) -> list[dict]:
    """Score ``jobs`` (reusing cached rows with the same fingerprint), appending new rows to ``cache_path``;
    returns the rows in job order."""
    from tqdm import tqdm

    cached = _read_cache(cache_path)
    done = {}
    todo = []
    for job in jobs:
        row = cached.get((job.example_id, job.system))
        if row is not None and row.get("fingerprint") == job.fingerprint:
            done[(job.example_id, job.system)] = row
        else:
            todo.append(job)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with cache_path.open("a") as cache, tqdm(total=len(todo), desc="scoring", unit="clip",
                                             disable=not progress or not todo) as bar:
        def keep(row: dict) -> None:
            done[(row["id"], row["system"])] = row
            cache.write(json.dumps(row) + "\n")
            cache.flush()
            bar.update()

        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                keep(score_job(job))
        else:
            import multiprocessing

            with _single_threaded_children(), ProcessPoolExecutor(
                    min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(score_job, job) for job in todo]
                try:
                    for future in as_completed(futures):
                        keep(future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    return [done[(job.example_id, job.system)] for job in jobs]


def _checkpoint_path(checkpoint: str | None) -> tuple[str, Path | None]:
    """(display name, file or folder) of a checkpoint argument; bundled names resolve inside the package."""
    from apollo_restore.checkpoint import bundled_models

    bundled = bundled_models()
    if checkpoint is None or checkpoint in bundled:
        name = checkpoint or "default"
        if name not in bundled:
            raise ApolloError("no bundled default model in this install: pass --checkpoint")
        return f"apollo-{name}", bundled[name]
    path = Path(checkpoint)
    if not path.exists():
        raise ApolloError(f"{checkpoint}: no such checkpoint (bundled models: {', '.join(bundled) or 'none'})")
    return path.stem if path.is_file() else path.name, path


def restore_with_checkpoint(evalset: EvalSet, checkpoint: str | None, name: str | None, config: EvalConfig
                            ) -> tuple[str, dict]:
    """Restore every degraded example with one checkpoint into ``OUT/restored/<system>/``.

    Returns the system name and its description (checkpoint, sha256, parameter count, RTF of the paper's
    1 s protocol, measured once per folder and device); existing outputs of the same checkpoint are reused,
    outputs of a different one are an error.
    """
    from tqdm import tqdm

    from apollo_restore.audio import read_audio, write_audio
    from apollo_restore.checkpoint import file_sha256, load_checkpoint
    from apollo_restore.inference import Restorer

    default_name, path = _checkpoint_path(checkpoint)
    system = name or default_name
    if system == INPUT_SYSTEM or system in evalset.outputs:
        raise ApolloError(f"system name {system!r} is taken: choose another with --name")
    folder = config.out_dir / RESTORED_DIR / system
    source_file = folder / "source.json"
    model, gate = load_checkpoint(path)
    info = {"kind": "checkpoint", "checkpoint": str(path), "sha256": file_sha256(path),
            "params": model.num_parameters(), "config": model.config.to_dict(),
            "gate": None if gate is None else gate.config.to_dict(), "precision": config.precision}
    previous = json.loads(source_file.read_text()) if source_file.is_file() else {}
    if previous and previous.get("sha256") != info["sha256"]:
        raise ApolloError(f"{folder} holds outputs of another checkpoint ({previous.get('checkpoint')}): "
                          "use another --out or --name")
    held = previous.get("precision", "fp32")  # folders written before --precision hold fp32 outputs
    if previous and held != config.precision:
        raise ApolloError(f"{folder} holds {held} outputs of this checkpoint: use another --out or --name")
    info.update({key: previous[key] for key in ("rtf_ms", "rtf_device") if key in previous})
    folder.mkdir(parents=True, exist_ok=True)
    source_file.write_text(json.dumps(info, indent=2))
    restorer = Restorer(model, config.device, config.block_seconds, gate, config.precision)
    todo = [e for e in evalset.examples if not (folder / f"{e.id}.wav").is_file()]
    for example in tqdm(todo, desc=f"restoring ({system})", unit="clip", disable=not config.progress or not todo):
        audio, sr = read_audio(example.degraded)
        write_audio(folder / f"{example.id}.wav", restorer.restore_array(audio, sr), sr, subtype="FLOAT")
    evalset.outputs[system] = {e.id: folder / f"{e.id}.wav" for e in evalset.examples}
    if config.rtf_iterations > 0 and info.get("rtf_device") != str(restorer.device):  # once per folder+device
        from apollo_restore.evaluate.bench import paper_rtf

        info["rtf_ms"] = 1000 * paper_rtf(restorer.model, restorer.device, config.rtf_iterations)
        info["rtf_device"] = str(restorer.device)
        source_file.write_text(json.dumps(info, indent=2))
    del model, restorer
    return system, info


def evaluate(evalset: EvalSet, config: EvalConfig) -> tuple[list[dict], dict]:
    """Restore with each checkpoint, then score the input and every system on every example.

    Returns (rows, systems): one row per (example, system), and per system its description.
    """
    if config.names and len(config.names) != len(config.checkpoints):
        raise ApolloError("give one --name per --checkpoint")
    systems: dict[str, dict] = {INPUT_SYSTEM: {"kind": "input", "params": None}}
    systems.update({name: {"kind": "external", "params": None} for name in evalset.outputs})
    for index, checkpoint in enumerate(config.checkpoints):
        name, info = restore_with_checkpoint(evalset, checkpoint, config.names[index] if config.names else None, config)
        systems[name] = info
    jobs = []
    for example in evalset.examples:
        meta = {"bitrate": example.bitrate, "category": example.category, "codec": example.codec}
        estimates = {INPUT_SYSTEM: example.degraded}
        estimates.update({s: files[example.id] for s, files in evalset.outputs.items() if example.id in files})
        jobs += [ScoreJob(example.id, system, example.clean, example.degraded, estimate, meta, config.visqol)
                 for system, estimate in estimates.items()]
    rows = run_scoring(jobs, config.out_dir / CACHE_FILE, config.jobs, config.progress)
    return rows, systems
