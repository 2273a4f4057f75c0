"""Build the demo clip shipped with the package (src/apollo_restore/assets/demo/).

Mixes the stems of one song rendered by `apollo make-data` (use a held-out `test` song), keeps the window with
the most energy above 8 kHz, and MP3-encodes it with the project's own encoder path:

    python scripts/make_demo.py /work/data/generated/test/<song> --bitrate 32 --seconds 12
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from apollo_restore.audio import read_audio
from apollo_restore.degrade import mp3_encode

OUT = Path(__file__).resolve().parents[1] / "src" / "apollo_restore" / "assets" / "demo"


def brightest_window(mix: np.ndarray, sr: int, seconds: float) -> int:
    """Start sample of the ``seconds`` window of ``mix [C, L]`` with the most energy above 8 kHz."""
    spectrum = np.fft.rfft(mix.mean(0)[: len(mix[0]) // 2048 * 2048].reshape(-1, 2048), axis=1)
    high = (np.abs(spectrum[:, int(8000 / sr * 2048):]) ** 2).sum(1)
    width = int(seconds * sr / 2048)
    scores = np.convolve(high, np.ones(width), mode="valid")
    return int(np.argmax(scores)) * 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("song", type=Path)
    parser.add_argument("--bitrate", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    meta = json.loads((args.song / "meta.json").read_text())
    stems = [read_audio(args.song / stem["file"]) for stem in meta["stems"]]
    sr = stems[0][1]
    mix = sum(audio for audio, _ in stems)
    start = brightest_window(mix, sr, args.seconds)
    clip = mix[:, start : start + int(args.seconds * sr)]
    clip = clip / np.abs(clip).max() * 10 ** (-1 / 20)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "demo.mp3").write_bytes(mp3_encode(clip, sr, args.bitrate))
    credits = "\n".join(f"- {s['family']}: {s['instrument']} ({s['source']}; {s['license']})" for s in meta["stems"])
    (OUT / "README.md").write_text(
        f"# Demo clip\n\n`demo.mp3`: {args.seconds:g} s of `{meta['song_id']}` ({meta['split']} split of "
        f"`apollo make-data`, seed {meta['seed']}), starting at {start / sr:.1f} s, peak -1 dBFS, LAME CBR "
        f"{args.bitrate} kbit/s at {sr} Hz. Built by `scripts/make_demo.py`.\n\n"
        f"Score: {meta['score']['source']} ({meta['score']['license']}).\n\nStems:\n{credits}\n"
    )
    print(f"{OUT / 'demo.mp3'}: {meta['song_id']} from {start / sr:.1f} s, {args.bitrate} kbit/s")


if __name__ == "__main__":
    main()
