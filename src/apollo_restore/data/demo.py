"""The demo clip shipped with the package (``assets/demo/``): `apollo make-demo SONG`.

A song rendered by `apollo make-data` (a held-out ``test`` song) is mixed from its stems; the ``seconds``
window with the most energy above 8 kHz (where an MP3 cuts) is kept, peak-normalised to -1 dBFS and
LAME-encoded by this project's encoder path; ``README.md`` beside it credits the score and every stem.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write, atomic_write_text

#: analysis frames of the window search (samples) and the band it looks at
_FRAME = 2048
_HIGH_HZ = 8000.0
PEAK_DBFS = -1.0


def demo_folder() -> Path:
    """Where the package keeps its demo clip."""
    return Path(str(resources.files("apollo_restore") / "assets" / "demo"))


def brightest_window(mix: np.ndarray, sample_rate: int, seconds: float) -> int:
    """Start sample (a multiple of 2048) of the ``seconds`` window of ``mix [channels, samples]`` with the most
    energy above 8 kHz."""
    frames = mix.mean(0)[: mix.shape[1] // _FRAME * _FRAME].reshape(-1, _FRAME)
    high = (np.abs(np.fft.rfft(frames, axis=1)[:, int(_HIGH_HZ / sample_rate * _FRAME):]) ** 2).sum(1)
    width = min(len(high), max(1, int(seconds * sample_rate / _FRAME)))
    return int(np.argmax(np.convolve(high, np.ones(width), mode="valid"))) * _FRAME


def make_demo(song: str | os.PathLike, out: str | os.PathLike | None = None, bitrate: int = 32,
              seconds: float = 12.0) -> Path:
    """Write ``demo.mp3`` and its ``README.md`` from the song folder ``song`` (``meta.json`` + stems) into
    ``out`` (default: the package's demo folder); returns the MP3's path."""
    from apollo_restore.audio import read_audio
    from apollo_restore.degrade import mp3_encode

    song, out = Path(song), Path(out) if out is not None else demo_folder()
    try:
        meta = json.loads((song / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ApolloError(f"{song}: not a song folder of `apollo make-data` (meta.json: {error})") from None
    stems = [read_audio(song / stem["file"]) for stem in meta["stems"]]
    sample_rate = stems[0][1]
    if any(sr != sample_rate for _, sr in stems):
        raise ApolloError(f"{song}: stems at different sample rates")
    mix = sum(audio for audio, _ in stems)
    start = brightest_window(mix, sample_rate, seconds)
    clip = mix[:, start : start + round(seconds * sample_rate)]
    peak = np.abs(clip).max()
    if not peak > 0:
        raise ApolloError(f"{song}: the mix is silent")
    clip = clip / peak * 10 ** (PEAK_DBFS / 20)
    out.mkdir(parents=True, exist_ok=True)
    encoded = mp3_encode(clip, sample_rate, bitrate)
    atomic_write(out / "demo.mp3", lambda tmp: Path(tmp).write_bytes(encoded))
    credits = "\n".join(f"- {s['family']}: {s['instrument']} ({s['source']}; {s['license']})" for s in meta["stems"])
    atomic_write_text(out / "README.md", (
        f"# Demo clip\n\n`demo.mp3`: {clip.shape[1] / sample_rate:g} s of `{meta['song_id']}` ({meta['split']} "
        f"split of `apollo make-data`, seed {meta['seed']}), starting at {start / sample_rate:.1f} s, peak "
        f"{PEAK_DBFS:g} dBFS, LAME CBR {bitrate} kbit/s at {sample_rate} Hz. Built by `apollo make-demo`.\n\n"
        f"Score: {meta['score']['source']} ({meta['score']['license']}).\n\nStems:\n{credits}\n"))
    return out / "demo.mp3"
