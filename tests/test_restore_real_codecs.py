"""`apollo restore` and `apollo stream` on real encoder output (`lame`, `ffmpeg`), against FFmpeg's own decode.

Decoding is right when restoring the file gives what restoring FFmpeg's decode of it (as a float WAV) gives;
with the bundled models, which pass the pass band through, the restored pass band equals the decode window by
window (no dropout) and the length is the original's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from apollo_restore.checkpoint import save_model
from apollo_restore.cli import main
from codec_files import RATE, RECIPES, SECONDS, encode, ffmpeg_decode
from conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")
#: 100 ms windows for the window-by-window comparison
WINDOW = 4410


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real-codecs")
    save_model(tiny_model(), folder / "tiny")
    save_model(tiny_model(causal=True), folder / "tiny-causal")
    return folder


def _read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0].T


def _as_wav(folder: Path, path: Path, length: int) -> Path:
    """FFmpeg's decode of ``path``, cropped to ``length`` (FFmpeg keeps AAC's end padding), as a float WAV."""
    rate = RECIPES[path.name][1]
    wav = folder / f"{path.name}.ffmpeg.wav"
    sf.write(wav, ffmpeg_decode(path, 2)[:, :length].T, rate, subtype="FLOAT")
    return wav


def _restore(src: Path, dst: Path, checkpoint: str | Path) -> np.ndarray:
    assert main(["restore", "-q", str(src), "-o", str(dst), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    return _read(dst)


def _stream(src: Path, dst: Path, checkpoint: str | Path) -> np.ndarray:
    """Chunks of 40 ms (reads of 1764 samples; tests/test_decode.py reads blocks of 441 too)."""
    args = ["stream", str(src), "-o", str(dst), "--checkpoint", str(checkpoint), "--device", "cpu", "--chunk-ms", "40"]
    assert main(args) == 0
    return _read(dst)


RESTORED = ["lame-cbr128-id3-joint.mp3", "lame-vbr-V4.mp3", "lame-mpeg2-22k.mp3", "ffmpeg-aac128.m4a",
            "ffmpeg-opus96.opus"]
STREAMED = ["lame-cbr128-id3-joint.mp3", "ffmpeg-aac128.m4a"]


@pytest.mark.parametrize(("command", "name"), [*(("restore", n) for n in RESTORED), *(("stream", n) for n in STREAMED)])
def test_a_file_gives_what_ffmpegs_decode_of_it_gives(folder, command, name):
    """`apollo restore` (tiny model) or `apollo stream` (tiny causal model) of the file equals the same command
    on FFmpeg's decode of it."""
    run, checkpoint = (_restore, folder / "tiny") if command == "restore" else (_stream, folder / "tiny-causal")
    path = encode(name, folder)
    reference = _as_wav(folder, path, round(SECONDS * RECIPES[name][1]))
    restored = run(path, folder / f"{name}.{command}.wav", checkpoint)
    expected = run(reference, folder / f"{name}.{command}-expected.wav", checkpoint)
    assert restored.shape == expected.shape == (2, round(SECONDS * RATE))
    assert np.abs(restored - expected).max() < 1e-4


def _band_db(audio: np.ndarray, low: float, high: float) -> np.ndarray:
    """Energy in ``[low, high)`` Hz of each 100 ms window (channels pooled), dB."""
    n = audio.shape[1] // WINDOW
    frames = audio[:, : n * WINDOW].reshape(2, n, WINDOW) * np.hanning(WINDOW)
    spectrum = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(WINDOW, 1 / RATE)
    band = spectrum[..., (freqs >= low) & (freqs < high)].sum(axis=(0, 2))
    return 10 * np.log10(band + 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("command", "model"), [("restore", "default"), ("stream", "causal")])
def test_bundled_models_keep_the_pass_band_of_a_lame_mp3_window_by_window(folder, command, model):
    path = encode("lame-cbr128-id3-joint.mp3", folder)
    decoded = ffmpeg_decode(path, 2)
    run = _restore if command == "restore" else _stream
    restored = run(path, folder / f"bundled-{command}.wav", model)
    assert restored.shape == decoded.shape == (2, round(SECONDS * RATE))  # the original's length, gapless
    level = _band_db(decoded, 100, 12000)
    difference = _band_db(restored, 100, 12000) - level
    loud = level > level.max() - 40
    assert np.abs(difference[loud]).max() < 1.0, np.round(difference, 2)  # no dropout, pass band kept
