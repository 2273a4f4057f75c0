"""`apollo make-demo`: the shipped demo clip from a song folder (real stems on disk, real LAME encode)."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from apollo_restore.audio import read_audio
from apollo_restore.cli import main
from apollo_restore.cli.restore import demo_clip
from apollo_restore.data.demo import brightest_window

SR = 44100


def write_song(folder, seconds: float = 6.0, bright_at: float = 3.0):
    """A two-stem song folder: a 440 Hz tone throughout, and hiss above 8 kHz for 1 s from ``bright_at``."""
    folder.mkdir(parents=True)
    n = round(seconds * SR)
    t = np.arange(n) / SR
    tone = 0.2 * np.sin(2 * np.pi * 440 * t)
    noise = np.random.default_rng(0).standard_normal(n)
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(n, 1 / SR) < 9000] = 0
    hiss = np.fft.irfft(spectrum, n=n)
    hiss *= 0.05 / np.abs(hiss).max() * ((t >= bright_at) & (t < bright_at + 1.0))
    sf.write(folder / "tone.flac", np.stack([tone, tone], 1), SR)
    sf.write(folder / "hiss.flac", np.stack([hiss, hiss], 1), SR)
    meta = {"song_id": "00001_test_song", "split": "test", "seed": 7,
            "score": {"source": "a test score", "license": "public domain"},
            "stems": [{"file": "tone.flac", "family": "keys", "instrument": "sine", "source": "tone", "license": "CC0"},
                      {"file": "hiss.flac", "family": "drums", "instrument": "hiss", "source": "noise",
                       "license": "CC0"}]}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def test_brightest_window_finds_the_band_above_8k():
    mix = np.zeros((2, 10 * SR))
    burst = np.random.default_rng(1).standard_normal(SR)
    mix[:, 6 * SR : 7 * SR] = np.fft.irfft(np.fft.rfft(burst) * (np.fft.rfftfreq(SR, 1 / SR) > 9000), n=SR)
    mix[:, : 2 * SR] = 0.5  # louder, but DC: nothing above 8 kHz
    start = brightest_window(mix, SR, 1.0)
    assert start % 2048 == 0 and abs(start - 6 * SR) < 2048


def test_make_demo_writes_a_clip_and_its_credits(tmp_path):
    song = write_song(tmp_path / "song")
    out = tmp_path / "demo"
    assert main(["make-demo", str(song), "-o", str(out), "--seconds", "2", "--bitrate", "64"]) == 0
    audio, sr = read_audio(out / "demo.mp3")
    assert sr == SR and audio.shape[0] == 2 and abs(audio.shape[1] - 2 * SR) < 2048
    assert -3.0 < 20 * np.log10(np.abs(audio).max()) < 0.0  # normalised to -1 dBFS before the (lossy) encode
    card = (out / "README.md").read_text()
    start = float(card.split("starting at ")[1].split(" s")[0])
    assert 1.0 <= start <= 3.0  # the 2 s window holds the hiss (3-4 s)
    assert "00001_test_song" in card and "LAME CBR 64 kbit/s" in card
    assert "- drums: hiss (noise; CC0)" in card and "Score: a test score (public domain)" in card
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "demo.mp3"]  # no temporaries left


def test_make_demo_refuses_a_folder_that_is_not_a_song(tmp_path):
    assert main(["make-demo", str(tmp_path), "-o", str(tmp_path / "demo")]) == 1
    assert not (tmp_path / "demo").exists()


def test_the_shipped_demo_clip_is_where_make_demo_writes():
    assert demo_clip().is_file() and (demo_clip().parent / "README.md").is_file()
