"""Real encoder output for the decoding tests: files made by the `lame` and `ffmpeg` command-line tools.

A missing tool fails the tests under CI (the Makefile's `make test` installs both) and skips them elsewhere.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from prerequisites import unavailable

RATE = 44100
#: longer than 2**18 samples (5.94 s at 44.1 kHz), where libsndfile's block-wise MP3 reads went wrong
SECONDS = 7.0
#: the click train's period and first click (samples)
CLICK_PERIOD, FIRST_CLICK = 4410, 1000


def need(tool: str) -> str:
    """The path of command-line ``tool``; fails under CI and skips elsewhere when it is missing."""
    path = shutil.which(tool)
    if path is None:
        unavailable(f"`{tool}` is not installed (make test installs it: apt-get install {tool})")
    return path


def original(seconds: float = SECONDS, rate: int = RATE) -> np.ndarray:
    """Stereo music-like test signal with a click train, float32 ``[2, n]`` in [-0.8, 0.8]."""
    rng = np.random.default_rng(7)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    tones = [0.15 * np.sin(2 * np.pi * f * t + p) for f, p in ((196, 0.3), (440, 1.1), (2500, 2.0))]
    noise = 0.03 * rng.standard_normal((2, n))
    audio = np.stack([sum(tones), 0.9 * sum(tones[::-1])]) + noise
    audio *= 0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2
    audio[:, FIRST_CLICK::CLICK_PERIOD] += 0.3
    return audio.astype(np.float32)


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


def ffmpeg_decode(path: Path, channels: int) -> np.ndarray:
    """FFmpeg's own decode of ``path`` (the `ffmpeg` CLI) as float32 ``[channels, n]``."""
    raw = subprocess.run([need("ffmpeg"), "-v", "error", "-i", str(path), "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, "<f4").reshape(-1, channels).T


#: name -> (how it is made, its sample rate, whether a header records the encoder delay and padding)
RECIPES = {
    "lame-cbr128-id3-joint.mp3": (("lame", "-b", "128", "-m", "j", "--add-id3v2", "--tt", "Title", "--ta", "Artist"),
                                  RATE, True),
    "lame-vbr-V4.mp3": (("lame", "-V", "4"), RATE, True),
    "lame-no-header.mp3": (("lame", "-b", "128", "-t"), RATE, False),
    "lame-mpeg2-22k.mp3": (("lame", "-V", "5", "--resample", "22.05"), 22050, True),
    "lame-mpeg25-11k.mp3": (("lame", "-V", "6", "--resample", "11.025"), 11025, True),
    "ffmpeg-cbr192.mp3": (("ffmpeg", "-c:a", "libmp3lame", "-b:a", "192k"), RATE, True),
    "ffmpeg-vbr-q2.mp3": (("ffmpeg", "-c:a", "libmp3lame", "-q:a", "2"), RATE, True),
    "ffmpeg-aac128.m4a": (("ffmpeg", "-c:a", "aac", "-b:a", "128k"), RATE, True),
    "ffmpeg-aac-itunsmpb.m4a": (("ffmpeg", "-c:a", "aac", "-b:a", "96k", "-use_editlist", "0"), RATE, True),
    "ffmpeg-adts.aac": (("ffmpeg", "-c:a", "aac", "-b:a", "96k", "-f", "adts"), RATE, False),
    "ffmpeg-opus96.opus": (("ffmpeg", "-c:a", "libopus", "-b:a", "96k"), 48000, True),
    "ffmpeg-vorbis.ogg": (("ffmpeg", "-c:a", "libvorbis", "-q:a", "4"), RATE, True),
    "ffmpeg-alac.m4a": (("ffmpeg", "-c:a", "alac"), RATE, True),
    "ffmpeg.flac": (("ffmpeg", "-c:a", "flac"), RATE, True),
    "ffmpeg-s24.aiff": (("ffmpeg", "-c:a", "pcm_s24be"), RATE, True),
}
LOSSY_MP3 = [name for name in RECIPES if name.endswith(".mp3")]
#: files whose header states no length (FFmpeg estimates it from the bit rate)
NO_LENGTH_IN_HEADER = ("lame-no-header.mp3", "ffmpeg-adts.aac")


def encode(name: str, folder: Path) -> Path:
    """Make ``folder/name`` from the original (written once as 16-bit WAV) with its recipe."""
    wav = folder / "original.wav"
    if not wav.exists():
        sf.write(wav, original().T, RATE, subtype="PCM_16")
    out = folder / name
    if out.exists():
        return out
    recipe, _, _ = RECIPES[name]
    tool = need(recipe[0])
    if recipe[0] == "lame":
        run(tool, "--quiet", *recipe[1:], str(wav), str(out))
    else:
        run(tool, "-v", "error", "-y", "-i", str(wav), *recipe[1:], str(out))
    if name == "ffmpeg-aac-itunsmpb.m4a":  # as iTunes writes it: no edit list, the gapless facts in iTunSMPB
        frames = len(ffmpeg_decode(out, 2)[0])
        add_itunsmpb(out, priming=1024, padding=frames - 1024 - int(SECONDS * RATE), length=int(SECONDS * RATE))
    return out


def add_itunsmpb(path: Path, priming: int, padding: int, length: int) -> None:
    """Add iTunes' gapless tag (``----:com.apple.iTunes:iTunSMPB``) to an M4A whose ``moov`` follows ``mdat``."""
    data = bytearray(path.read_bytes())

    def boxes(start: int, stop: int) -> dict[bytes, tuple[int, int]]:
        found, at = {}, start
        while at + 8 <= stop:
            size, kind = struct.unpack(">I4s", data[at : at + 8])
            found[kind] = (at, size)
            at += size
        return found

    top = boxes(0, len(data))
    assert top[b"moov"][0] > top[b"mdat"][0], "moov must come last, so chunk offsets stay valid"
    moov = top[b"moov"]
    udta = boxes(moov[0] + 8, moov[0] + moov[1])[b"udta"]
    meta = boxes(udta[0] + 8, udta[0] + udta[1])[b"meta"]
    ilst = boxes(meta[0] + 12, meta[0] + meta[1])[b"ilst"]  # meta is a full box: 4 more header bytes
    text = f" 00000000 {priming:08X} {padding:08X} {length:016X} 00000000 00000000".encode()

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(body), kind) + body

    tag = box(b"----", box(b"mean", b"\0\0\0\0com.apple.iTunes") + box(b"name", b"\0\0\0\0iTunSMPB")
              + box(b"data", struct.pack(">II", 1, 0) + text))
    end = ilst[0] + ilst[1]
    data[end:end] = tag
    for at, size in (moov, udta, meta, ilst):
        data[at : at + 4] = struct.pack(">I", size + len(tag))
    path.write_bytes(bytes(data))


def lag(reference: np.ndarray, decoded: np.ndarray) -> int:
    """How many samples ``decoded`` is late against ``reference`` (argmax of the cross-correlation)."""
    n = 1 << int(np.ceil(np.log2(reference.size + decoded.size)))
    corr = np.fft.irfft(np.conj(np.fft.rfft(reference, n)) * np.fft.rfft(decoded, n), n)
    k = int(np.argmax(corr))
    return k if k < n // 2 else k - n
