"""Codec degradation that stays sample-aligned with its input: MP3 (LAME), AAC and Opus (FFmpeg), low-pass.

Every function takes float32 ``[channels, samples]`` audio and returns float32 audio of the same shape and
sample rate, sample-aligned with the input (the codec delay is removed, never rolled around, and the tail is
cropped or zero-padded). What "24 kbps" means at 44.1 kHz: MPEG-1 Layer III has no 24 kbps frame size, so
we ask LAME for 24 kbps while holding the output at the input's rate; LAME then writes 32 kbps frames carrying
its 24 kbps coding (a ~4.3 kHz low-pass instead of ~5.5 kHz at 32 kbps). This is what the paper's FFmpeg/sox
path produced; LAME's own default (dropping the sample rate) is a different, milder degradation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from apollo_restore.audio import as_channels_first, fit_length, resample
from apollo_restore.errors import ApolloError

#: bitrates (kbit/s) the paper trains and evaluates on
PAPER_BITRATES = (24, 32, 48, 64, 96, 128)
CODECS = ("mp3", "aac", "opus", "lowpass")
#: LAME encoder delay (576) + MP3 decoder delay (529): the decoded signal starts this many samples late
MP3_DELAY = 1105
#: sample rates an MP3 (MPEG-1/2/2.5 Layer III) stream can carry
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: level the signal is scaled to before a codec sees it (codecs take 16-bit PCM; this avoids clipping and
#: keeps quiet stems above the 16-bit floor); the decoded signal is scaled back
CODEC_PEAK = 0.9
#: LAME's algorithm quality (0 best .. 9 fastest): 3 is LAME's own default, which FFmpeg and sox also use
LAME_QUALITY = 3


@dataclass(frozen=True)
class Degradation:
    """One concrete degradation: ``codec`` at ``bitrate`` kbit/s (CBR), or LAME VBR ``vbr_quality``
    (0 best .. 9), or a low-pass at ``cutoff_hz``."""

    codec: str = "mp3"
    bitrate: int | None = 128
    vbr_quality: int | None = None
    cutoff_hz: float | None = None

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ApolloError(f"unknown codec {self.codec!r}; choose one of {', '.join(CODECS)}")
        if self.codec == "lowpass":
            if not self.cutoff_hz or self.cutoff_hz <= 0:
                raise ApolloError("the lowpass degradation needs a positive cutoff_hz")
        elif self.vbr_quality is not None:
            if self.codec != "mp3" or not 0 <= self.vbr_quality <= 9:
                raise ApolloError("vbr_quality is a LAME setting (mp3 only) from 0 (best) to 9")
        elif self.bitrate is None or not 8 <= self.bitrate <= 512:
            raise ApolloError(f"bitrate must be 8..512 kbit/s, got {self.bitrate}")

    @property
    def label(self) -> str:
        """Short name, e.g. ``mp3-32k``, ``mp3-V4``, ``lowpass-8000Hz``."""
        if self.codec == "lowpass":
            return f"lowpass-{self.cutoff_hz:g}Hz"
        if self.vbr_quality is not None:
            return f"mp3-V{self.vbr_quality}"
        return f"{self.codec}-{self.bitrate}k"


@dataclass
class DegradeConfig:
    """What the training data draws from: one codec, a set of CBR bitrates, optional LAME VBR levels and,
    for ``codec="lowpass"``, cutoffs. Each example draws one option uniformly."""

    codec: str = "mp3"
    bitrates: tuple[int, ...] = PAPER_BITRATES
    vbr_qualities: tuple[int, ...] = ()
    cutoffs_hz: tuple[float, ...] = (4000.0, 8000.0, 11000.0, 16000.0)

    def options(self) -> list[Degradation]:
        """Every degradation this config can draw, in a fixed order."""
        if self.codec == "lowpass":
            return [Degradation("lowpass", None, None, float(c)) for c in self.cutoffs_hz]
        options = [Degradation(self.codec, int(b)) for b in self.bitrates]
        options += [Degradation("mp3", None, int(q)) for q in self.vbr_qualities]
        if not options:
            raise ApolloError("degrade config has no bitrates to draw from")
        return options

    def draw(self, rng: np.random.Generator) -> Degradation:
        """One degradation drawn uniformly with ``rng``."""
        options = self.options()
        return options[int(rng.integers(len(options)))]


def _to_pcm16(audio: np.ndarray) -> bytes:
    """``[channels, samples]`` in [-1, 1] -> interleaved little-endian int16 bytes."""
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").T.tobytes()


def _fit(decoded: np.ndarray, delay: int, length: int) -> np.ndarray:
    """Drop ``delay`` leading samples and crop/zero-pad ``[channels, n]`` to ``length`` (no wrap-around)."""
    return np.ascontiguousarray(fit_length(decoded[:, delay:], length), dtype=np.float32)


def mp3_encode(audio: np.ndarray, sample_rate: int, bitrate: int | None = 128,
               vbr_quality: int | None = None) -> bytes:
    """LAME-encode ``[channels<=2, samples]`` in [-1, 1] at ``sample_rate`` (kept as the stream's rate)."""
    import lameenc

    encoder = lameenc.Encoder()
    encoder.set_channels(audio.shape[0])
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_out_sample_rate(sample_rate)
    encoder.set_quality(LAME_QUALITY)
    if vbr_quality is None:
        encoder.set_bit_rate(int(bitrate))
    else:
        encoder.set_vbr(4)  # vbr_mtrh, LAME's default VBR mode (-V n)
        encoder.set_vbr_quality(int(vbr_quality))
    return bytes(encoder.encode(_to_pcm16(audio)) + encoder.flush())


def mp3_decode(data: bytes, channels: int, sample_rate: int) -> np.ndarray:
    """Decode MP3 bytes to float32 ``[channels, n]`` (n includes the codec delay; no gapless trimming)."""
    import miniaudio

    decoded = miniaudio.decode(data, output_format=miniaudio.SampleFormat.FLOAT32, nchannels=channels,
                               sample_rate=sample_rate)
    return np.frombuffer(decoded.samples, dtype=np.float32).reshape(-1, channels).T


def _mp3_roundtrip(audio: np.ndarray, sr: int, degradation: Degradation) -> tuple[np.ndarray, int]:
    """MP3 encode + decode at ``sr``; returns aligned audio and the stream's size in bytes."""
    if audio.shape[0] > 2:
        raise ApolloError(f"MP3 carries 1 or 2 channels, got {audio.shape[0]}")
    rate = sr if sr in MP3_RATES else 44100
    data = mp3_encode(resample(audio, sr, rate), rate, degradation.bitrate, degradation.vbr_quality)
    decoded = _fit(mp3_decode(data, audio.shape[0], rate), MP3_DELAY, round(audio.shape[1] * rate / sr))
    return _fit(resample(decoded, rate, sr), 0, audio.shape[1]), len(data)


def _ffmpeg_roundtrip(audio: np.ndarray, sr: int, degradation: Degradation) -> tuple[np.ndarray, int]:
    """AAC (FFmpeg's encoder, MP4 container) or Opus (libopus, Ogg, 48 kHz) encode + decode.

    Both containers carry the encoder priming (edit list / pre-skip), which the decoder removes, so the
    output is aligned without a hand-written delay.
    """
    import av

    codec, fmt, rate = {"aac": ("aac", "mp4", sr), "opus": ("libopus", "ogg", 48000)}[degradation.codec]
    layout = {1: "mono", 2: "stereo"}.get(audio.shape[0])
    if layout is None:
        raise ApolloError(f"{degradation.codec} degradation takes 1 or 2 channels, got {audio.shape[0]}")
    signal = resample(audio, sr, rate)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        stream.bit_rate = int(degradation.bitrate) * 1000
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    size = buffer.tell()
    buffer.seek(0)
    with av.open(buffer) as container:
        chunks = [f.to_ndarray().reshape(audio.shape[0], -1) for f in container.decode(audio=0)]
    decoded = _fit(np.concatenate(chunks, axis=1) if chunks else signal[:, :0], 0, signal.shape[1])
    return _fit(resample(decoded, rate, sr), 0, audio.shape[1]), size


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, transition_hz: float = 200.0) -> np.ndarray:
    """Zero-phase low-pass of ``[channels, samples]``: FFT mask with a raised-cosine edge of
    ``transition_hz`` centred on ``cutoff_hz`` (linear zero padding, so nothing wraps around)."""
    length = audio.shape[1]
    n = 1 << int(np.ceil(np.log2(length + 8192)))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    ramp = np.clip((freqs - (cutoff_hz - transition_hz / 2)) / transition_hz, 0.0, 1.0)
    mask = 0.5 * (1.0 + np.cos(np.pi * ramp))
    spectrum = np.fft.rfft(audio, n=n, axis=1) * mask
    return np.fft.irfft(spectrum, n=n, axis=1)[:, :length].astype(np.float32)


def degrade_with_info(audio: np.ndarray, sample_rate: int, degradation: Degradation) -> tuple[np.ndarray, int]:
    """Apply ``degradation`` to ``[channels, samples]``; returns the aligned result and the mean bitrate in kbit/s
    of the coded stream (0 for the low-pass)."""
    audio, was_1d = as_channels_first(audio)
    if degradation.codec == "lowpass":
        out, kbps = lowpass(audio, sample_rate, float(degradation.cutoff_hz)), 0
    else:
        peak = float(np.abs(audio).max())
        scale = CODEC_PEAK / peak if peak > 0 else 1.0
        roundtrip = _mp3_roundtrip if degradation.codec == "mp3" else _ffmpeg_roundtrip
        out, size = roundtrip(audio * scale, sample_rate, degradation)
        out /= scale
        kbps = round(size * 8 / (audio.shape[1] / sample_rate) / 1000)
    return (out[0] if was_1d else out), kbps


def degrade(audio: np.ndarray, sample_rate: int, codec: str = "mp3", bitrate: int | None = 128,
            vbr_quality: int | None = None, cutoff_hz: float | None = None) -> np.ndarray:
    """Encode + decode ``[channels, samples]`` (or ``[samples]``) with ``codec``; same shape, aligned."""
    return degrade_with_info(audio, sample_rate, Degradation(codec, bitrate, vbr_quality, cutoff_hz))[0]
