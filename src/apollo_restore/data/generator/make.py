"""`apollo make-data`: render ``--hours`` of multi-stem songs into the folder layout, resumably.

Output: ``OUT/<split>/<song id>/<NN>_<family>_<instrument>.flac`` (16-bit, 44.1 kHz stereo; the stems sum
to the mastered song) and ``meta.json`` (written last: a song folder with it is finished and skipped on
resume), which records every arrangement and production parameter. Splits share no score (hash of the
corpus path), no SoundFont, no drum kit and no synth patch family; the recorded guitar and the Sonic Pi
loops are used in training songs only.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apollo_restore.audio import write_audio
from apollo_restore.data.activity import ActivityConfig, build_index
from apollo_restore.data.generator.presets import PresetBand, preset_table
from apollo_restore.data.generator.samples import SAMPLE_RATE, available_kits, load_kit, sample_license
from apollo_restore.data.generator.scores import GENRES, SCORE_LICENSE, catalogue, load_score
from apollo_restore.data.generator.song import INSTRUMENTS, SongPlan, StemPlan, plan_song, render_song
from apollo_restore.errors import ApolloError

#: SoundFonts per split. MuseScore_General shares most samples with FluidR3 (equal bandwidths for most
#: presets), so both are training banks; the evaluation splits use TimGM6mb, which shares none.
SPLIT_BANKS = {"train": ("FluidR3_GM.sf2", "MuseScore_General_Full.sf2"), "valid": ("TimGM6mb.sf2",),
               "test": ("TimGM6mb.sf2",)}
BANK_LICENSES = {"FluidR3_GM.sf2": "MIT (Debian fluid-soundfont-gm)",
                 "TimGM6mb.sf2": "GPL-2 (Debian timgm6mb-soundfont)",
                 "MuseScore_General_Full.sf2": "MIT (Debian musescore-general-soundfont-lossless)"}
STRUM_LICENSE = "CC-BY-3.0, belofilms (Debian hydrogen-drumkits-effects)"
GENERATED_LICENSE = "synthesised by apollo-restore (MIT)"
SPLIT_SHARES = {"train": 0.8, "valid": 0.1, "test": 0.1}
SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}
#: 16-bit FLAC like MUSDB18-HQ's 16-bit WAV: half the size and encode time of 24-bit
STEM_SUBTYPE = "PCM_16"
#: measured preset bandwidths depend on the SoundFont file only: one cache for every dataset
PRESET_CACHE = Path.home() / ".cache" / "apollo-restore" / "presets"
#: consecutive failed songs after which rendering stops (something is broken, not one odd score)
MAX_FAILURES = 8


@dataclass
class GeneratorConfig:
    """What to render: ``hours`` of songs shared among ``splits`` by SPLIT_SHARES (renormalised)."""

    out_dir: str
    hours: float = 1.0
    seed: int = 0
    splits: tuple[str, ...] = ("train", "valid", "test")
    max_seconds: float = 150.0
    jobs: int = 2
    soundfont_dir: str = "/usr/share/sounds/sf2"

    def targets(self) -> dict[str, float]:
        """Seconds of songs per split."""
        total = sum(SPLIT_SHARES[s] for s in self.splits)
        return {s: self.hours * 3600.0 * SPLIT_SHARES[s] / total for s in self.splits}

    def soundfonts(self, split: str) -> list[Path]:
        paths = [Path(self.soundfont_dir) / name for name in SPLIT_BANKS[split]]
        for path in paths:
            if not path.is_file():
                raise ApolloError(f"{path}: SoundFont for split {split!r} missing (run scripts/install-data-deps.sh)")
        return paths


def song_schedule(split: str, seed: int, count: int) -> list[tuple[str, str]]:
    """The first ``count`` (genre, corpus path) choices of a split: genres drawn by their shares, scores
    taken in a seeded order per genre without repeats until a genre's pool is used up."""
    pools = {g: p for g, p in catalogue(split).items() if p}
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split]])
    orders = {g: [pools[g][i] for i in rng.permutation(len(pools[g]))] for g in sorted(pools)}
    genres = sorted(pools)
    weights = np.array([GENRES[g][1] for g in genres])
    used = dict.fromkeys(genres, 0)
    schedule = []
    for _ in range(count):
        genre = genres[rng.choice(len(genres), p=weights / weights.sum())]
        schedule.append((genre, orders[genre][used[genre] % len(orders[genre])]))
        used[genre] += 1
    return schedule


def song_id(k: int, genre: str, source: str) -> str:
    return f"{k:05d}_{genre}_{re.sub(r'[^A-Za-z0-9]+', '-', Path(source).stem).strip('-')[:40]}"


_RENDERERS: dict[str, object] = {}


def _renderer(soundfont: Path):
    from apollo_restore.data.generator.fluid import FluidRenderer

    if str(soundfont) not in _RENDERERS:
        _RENDERERS[str(soundfont)] = FluidRenderer(soundfont, SAMPLE_RATE)
    return _RENDERERS[str(soundfont)]


def _presets(soundfont: Path) -> dict[int, PresetBand]:
    return preset_table(_renderer(soundfont), soundfont, PRESET_CACHE)


def _stem_source(plan: SongPlan, stem: StemPlan, bank: Path) -> tuple[str, str]:
    """(instrument, licence) of a stem."""
    if stem.hits:
        kit = load_kit(plan.kit)
        return plan.kit, kit.license if "Debian" in kit.license else f"{kit.license} (Debian hydrogen-drumkits)"
    if stem.strums:
        return "acoustic guitar strums", STRUM_LICENSE
    if stem.loop:
        return Path(stem.loop).stem, sample_license(Path(stem.loop))
    if stem.singer is not None:
        return f"formant singer ({stem.singer.voice})", GENERATED_LICENSE
    if stem.patch is not None:
        return f"synth {stem.patch.family}", GENERATED_LICENSE
    if stem.riser_bars:
        return "noise riser", GENERATED_LICENSE
    name = next(n for n, (program, _, _) in INSTRUMENTS.items() if program == stem.program)
    return name, BANK_LICENSES.get(bank.name, "see the SoundFont")


def _meta(plan: SongPlan, bank: Path, presets: dict[int, PresetBand], files: dict[str, str],
          loudness: float) -> dict:
    stems = []
    for stem in plan.stems:
        if stem.name not in files:
            continue
        instrument, license_ = _stem_source(plan, stem, bank)
        entry = {"file": files[stem.name], "family": stem.family, "instrument": instrument, "source": stem.source,
                 "license": license_, "gain_db": round(stem.gain_db, 2), "pan": round(stem.pan, 3),
                 "fx": stem.fx.to_dict()}
        if stem.program is not None:
            band = presets[stem.program]
            entry.update({"program": stem.program, "preset_edge_hz": band.edge_hz,
                          "preset_above16k_db": band.above16k_db, "band_limited": stem.band_limited})
        if stem.patch is not None:
            entry["synth"] = stem.patch.to_dict()
        if stem.singer is not None:
            entry["singer"] = stem.singer.to_dict()
        if stem.loop:
            entry["loop_rate"] = round(stem.loop_rate, 4)
        stems.append(entry)
    return {"song_id": plan.song_id, "split": plan.split, "seconds": plan.seconds, "seed": plan.seed,
            "style": plan.style, "score": {"source": plan.score.source, "genre": plan.score.genre,
                                           "license": SCORE_LICENSE},
            "tempo_qpm": round(plan.qpm, 2), "transpose": plan.transpose, "kit": plan.kit,
            "soundfont": {"file": bank.name, "license": BANK_LICENSES.get(bank.name, "")},
            "master": {**plan.bus.to_dict(), "loudness_lufs": round(loudness, 2)}, "stems": stems}


def render_job(config: GeneratorConfig, split: str, k: int, genre: str, source: str) -> tuple[str, float, float]:
    """Render song ``k`` of ``split`` into its folder; returns (song id, song seconds, stem seconds)."""
    out_dir = Path(config.out_dir)
    score = load_score(source, genre, out_dir / ".cache" / "scores")
    seed = int(np.random.SeedSequence([config.seed, SPLIT_SEEDS[split], k]).generate_state(1)[0])
    banks = config.soundfonts(split)
    bank = banks[seed % len(banks)]
    presets = _presets(bank)
    plan = plan_song(score, song_id(k, genre, source), split, seed, config.max_seconds, available_kits(split),
                     presets)
    stems, loudness = render_song(plan, _renderer(bank))
    folder = out_dir / split / plan.song_id
    files = {}
    for name, audio in stems.items():
        files[name] = f"{name}.flac"
        write_audio(folder / files[name], audio, SAMPLE_RATE, STEM_SUBTYPE)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".meta.")
    with os.fdopen(fd, "w") as handle:
        json.dump(_meta(plan, bank, presets, files, loudness), handle, indent=1)
    os.replace(tmp, folder / "meta.json")
    return plan.song_id, plan.seconds, plan.seconds * len(stems)


def _finished(folder: Path) -> float | None:
    """Seconds of a finished song folder, or None."""
    meta = folder / "meta.json"
    return float(json.loads(meta.read_text())["seconds"]) if meta.is_file() else None


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the render workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def generate(config: GeneratorConfig, progress: bool = True) -> dict:
    """Render until each split holds its share of ``hours``, then build the activity index of each split;
    returns counts and timings (of the rendering)."""
    from tqdm import tqdm

    from apollo_restore.data.generator.fluid import load_library
    from apollo_restore.data.generator.scores import corpus_root

    load_library(), corpus_root()  # fail early, with one line, when FluidSynth or music21 is missing
    for split in config.splits:
        if split not in SPLIT_BANKS:
            raise ApolloError(f"unknown split {split!r}")
        config.soundfonts(split)
    out_dir = Path(config.out_dir)
    summary = {"songs": 0, "song_seconds": 0.0, "stem_seconds": 0.0, "skipped": [], "resumed": 0}
    started, cpu_started = time.time(), _cpu_seconds()
    targets = config.targets()
    bar = tqdm(total=round(sum(targets.values())), unit="s", desc="make-data", disable=not progress)
    # spawned, not forked: libfluidsynth runs an OpenMP pool, which a forked child inherits dead (deadlock)
    with ProcessPoolExecutor(max_workers=max(1, config.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        banks = sorted({bank for split in config.splits for bank in config.soundfonts(split)})
        for future in [pool.submit(_presets, bank) for bank in banks]:  # measured once; the workers read the cache
            future.result()
        for split, target in sorted(targets.items(), key=lambda item: item[1]):  # small splits first
            schedule = song_schedule(split, config.seed, 100000)
            done, k, pending, failures = 0.0, 0, set[Future](), 0
            while True:
                while len(pending) < 2 * config.jobs and done + config.max_seconds * len(pending) < target:
                    genre, source = schedule[k]
                    seconds = _finished(out_dir / split / song_id(k, genre, source))
                    if seconds is not None:
                        done += seconds
                        summary["resumed"] += 1
                        bar.update(round(seconds))
                    else:
                        pending.add(pool.submit(render_job, config, split, k, genre, source))
                    k += 1
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        _, seconds, stem_seconds = future.result()
                    except Exception as error:  # a score music21 cannot read is skipped, not fatal
                        summary["skipped"].append(f"{type(error).__name__}: {error}")
                        failures += 1
                        if failures >= MAX_FAILURES:
                            pool.shutdown(cancel_futures=True)
                            raise ApolloError(f"{MAX_FAILURES} songs in a row failed; last: "
                                              f"{summary['skipped'][-1]}") from None
                        continue
                    failures = 0
                    done += seconds
                    summary["songs"] += 1
                    summary["song_seconds"] += seconds
                    summary["stem_seconds"] += stem_seconds
                    bar.update(round(seconds))
    bar.close()
    summary["wall_seconds"] = time.time() - started
    summary["cpu_seconds"] = _cpu_seconds() - cpu_started
    for split in config.splits:  # the activity index for the default 3 s clips, so training starts at once
        build_index("folder", out_dir, split, ActivityConfig(), progress=progress)
    return summary
