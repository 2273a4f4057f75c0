"""Reading every audio file through FFmpeg (PyAV): one sequential, gapless decoder for all formats.

`AudioReader` opens a file, reports its header facts (`AudioInfo`) and yields float32 ``[channels, n]``
blocks of any size; the blocks of one pass concatenate to exactly what a whole-file decode gives, whatever
the block size, because the file is decoded once, front to back, and only re-cut. (libsndfile's MP3 reader,
used before, returned wrong samples on block-wise reads of MPEG-2/2.5 and some VBR files.)

Gapless playback, i.e. the decoded signal has the original's length and alignment:

- MP3 with a LAME/Xing "Info" header: FFmpeg drops the encoder delay + 529 decoder-delay samples and the end
  padding the header records.
- M4A/MP4 (AAC, ALAC): FFmpeg drops the priming that the edit list or the iTunes ``iTunSMPB`` tag records; we
  drop the end padding, cropping to the ``iTunSMPB`` length or else to the edit list / sample table length.
- Ogg Opus and Vorbis: the pre-skip and the last page's granule position (FFmpeg).
- Where no header says (an MP3 without the LAME header, raw ADTS ``.aac``, an M4A with neither an edit list
  nor ``iTunSMPB``), nothing is dropped: the output keeps the codec's delay (MP3: 576 encoder + 529 decoder =
  1105 samples for LAME) and padding, as every decoder without that information returns it.

A packet that fails to decode is replaced by silence of its length (so what follows keeps its timing) and
counted; a file that ends before its header says it should is read as far as it goes. Both give one warning.
"""

from __future__ import annotations

import itertools
import os
import stat
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from apollo_restore.errors import ApolloError, ApolloWarning
from apollo_restore.files import missing_input

#: codecs whose decoded samples do not depend on where decoding started (so seeking is exact)
_LOSSLESS = ("pcm_", "flac", "alac", "wavpack", "tta", "ape", "mlp", "truehd")
#: FFmpeg probes 5 MB by default: 0.4 s to open a 16-bit WAV (it looks for S/PDIF data in it); 32 KB is many
#: packets of any audio codec (measured: the same rate, channels, duration and start on every test file). The
#: WAV demuxer's default packets (4096 bytes) make reading 6x slower; larger than 64 KB slows the probe
_OPEN_OPTIONS = {"probesize": "32768", "max_size": "65536"}
#: integer sample formats -> (scale, offset) to float in [-1, 1)
_INT_SCALE = {"u8": (1 / 128, -128.0), "s16": (1 / 32768, 0.0), "s32": (2.0**-31, 0.0), "s64": (2.0**-63, 0.0)}


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, from its header (nothing is decoded).

    ``length`` is the number of samples a decode gives. ``length_exact`` says whether the header states it
    (PCM WAV/AIFF, FLAC, MP3 with a LAME/Xing header, M4A, Ogg); otherwise (an MP3 without that header, raw
    ADTS AAC) it is FFmpeg's estimate from the bit rate, and only decoding tells the true length.
    """

    path: Path
    sample_rate: int
    channels: int
    length: int  # samples (per channel)
    length_exact: bool
    codec: str

    @property
    def seconds(self) -> float:
        return self.length / self.sample_rate


def check_input_file(path: Path) -> None:
    """Refuse what is not a readable regular file (a FIFO would block forever) with a one-line reason."""
    problem = missing_input(path)  # missing, broken symlink, symlink loop
    if problem is not None:
        raise problem
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise ApolloError(f"{path}: is a folder, not an audio file")
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a device or socket"
        raise ApolloError(f"{path}: is {kind}, not a regular file (to restore a pipe, send raw PCM to "
                          "`apollo stream --raw -`)")
    if not os.access(path, os.R_OK):
        raise ApolloError(f"{path}: cannot read (permission denied)")


class AudioReader:
    """An open audio file: ``info`` from its header, ``blocks(n)`` to decode it (see module docstring).

    Use as a context manager, or call ``close()``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        check_input_file(self.path)
        self._container = self._open()
        try:
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise
        self.damaged = 0  # packets replaced by silence in the last pass

    def _open(self):
        import av

        try:
            return av.open(str(self.path), metadata_errors="ignore", options=_OPEN_OPTIONS)
        except av.error.InvalidDataError:
            raise ApolloError(f"{self.path}: not an audio file, or damaged (FFmpeg cannot read it)") from None
        except (av.error.FFmpegError, OSError) as error:
            raise ApolloError(f"{self.path}: cannot read audio ({_reason(error)})") from None

    def _reopen(self) -> None:
        self._container.close()
        self._container = self._open()
        self._stream = self._container.streams.audio[0]

    def _probe(self) -> AudioInfo:
        streams = self._container.streams.audio
        if not streams:
            raise ApolloError(f"{self.path}: has no audio stream")
        self._stream = stream = streams[0]
        context = stream.codec_context
        rate, channels = int(context.sample_rate or 0), len(context.layout.channels)
        if rate <= 0 or channels <= 0:
            raise ApolloError(f"{self.path}: holds no audio samples")
        length, exact = self._declared_length(rate)
        self._crop = exact and self._container.format.name.startswith("mov")  # FFmpeg keeps M4A end padding
        self._float = context.format is None or not context.format.name.startswith(("u8", "s16", "s32", "s64"))
        return AudioInfo(self.path, rate, channels, max(0, length), exact, context.codec.name)

    def _declared_length(self, rate: int) -> tuple[int, bool]:
        """(samples a decode gives, whether the header says so) for the first audio stream."""
        stream, container = self._stream, self._container
        fmt, codec = container.format.name, stream.codec_context.codec.name
        if stream.duration is not None:
            duration = round(stream.duration * stream.time_base * rate)
        else:
            duration = round((container.duration or 0) * rate / 1_000_000)
        start = round(stream.start_time * stream.time_base * rate) if stream.start_time else 0
        if fmt in ("wav", "aiff"):
            declared = _pcm_header_length(self.path, fmt)  # FFmpeg clamps the header's count to the file size
            return (declared, True) if declared is not None else (duration, False)
        if fmt.startswith("mov"):
            itunes = _itunes_length(container.metadata.get("iTunSMPB") or stream.metadata.get("iTunSMPB"))
            return (itunes, True) if itunes is not None else (duration - start, True)
        if fmt == "ogg":
            return duration - int(stream.codec_context.delay or 0), True  # Opus: the granule counts the pre-skip
        if fmt == "mp3":
            return duration, start > 0  # a start skip means FFmpeg read the LAME header's delay and padding
        if codec.startswith(_LOSSLESS) and stream.duration is not None:
            return duration, True
        return duration, False

    def blocks(self, size: int, start: int = 0) -> Iterator[np.ndarray]:
        """Decode from sample ``start`` to the end in float32 ``[channels, size]`` blocks (the last one
        shorter); one pass per reader. Raises ApolloError on non-finite samples; warns once about damaged or
        missing data."""
        if size < 1:
            raise ValueError("block size must be at least 1 sample")
        block, filled = np.empty((self.info.channels, size), np.float32), 0
        for chunk in self._decode(start):
            used = 0
            while used < chunk.shape[1]:
                take = min(size - filled, chunk.shape[1] - used)
                block[:, filled : filled + take] = chunk[:, used : used + take]
                filled, used = filled + take, used + take
                if filled == size:
                    yield block
                    block, filled = np.empty_like(block), 0
        if filled:
            yield block[:, :filled]
        self._report()

    def read(self, start: int = 0, length: int | None = None) -> np.ndarray:
        """Samples ``[start, start + length)`` (to the end if ``length`` is None; fewer if the file ends first)
        as float32 ``[channels, n]``, exactly as in a whole-file decode."""
        parts, held = [], 0
        for chunk in self._decode(start):
            if length is not None:
                chunk = chunk[:, : length - held]
            parts.append(chunk)
            held += chunk.shape[1]
            if length is not None and held >= length:
                break
        else:
            self._report()
        return np.concatenate(parts, axis=1) if parts else np.zeros((self.info.channels, 0), np.float32)

    def _decode(self, start: int) -> Iterator[np.ndarray]:
        """Decoded chunks from sample ``start`` on (cropped at the declared end where FFmpeg does not)."""
        self.damaged = 0
        chunks, skip = self._positioned(start)
        self.reached = start - skip  # the position decoding has reached, for the end-of-file check
        limit = self.info.length - start if self._crop else None
        for _, chunk in chunks:
            self.reached += chunk.shape[1]
            if skip:
                cut = min(skip, chunk.shape[1])
                chunk, skip = chunk[:, cut:], skip - cut
            if limit is not None:
                chunk, limit = chunk[:, :limit], limit - min(limit, chunk.shape[1])
            if chunk.shape[1]:
                if self._float and not np.isfinite(chunk).all():
                    raise ApolloError(f"{self.path}: contains NaN or infinite samples")
                yield chunk
            if limit == 0:
                return

    def _positioned(self, start: int) -> tuple[Iterator[tuple[int | None, np.ndarray]], int]:
        """Decoded chunks starting at or before sample ``start``, and how many of their samples to drop.

        Lossless codecs seek (the first frame's timestamp says where it landed); lossy ones decode from the
        beginning, since samples decoded after a seek differ from a continuous decode (decoder warm-up, the
        MP3 bit reservoir), and so does a seek that overshoots."""
        if start and self.info.codec.startswith(_LOSSLESS):
            self._container.seek(int(Fraction(start, self.info.sample_rate) / self._stream.time_base),
                                 backward=True, stream=self._stream)
            chunks = self._chunks()
            first = next(chunks, None)
            if first is not None and first[0] is not None:
                begin = round(first[0] * self._stream.time_base * self.info.sample_rate)
                if begin <= start:
                    return itertools.chain([first], chunks), start - begin
            self._reopen()
        return self._chunks(), start

    def _chunks(self) -> Iterator[tuple[int | None, np.ndarray]]:
        """(timestamp in stream time base if known, float32 ``[channels, n]``) for each decoded frame; a packet
        that fails to decode becomes silence of its length."""
        import av

        channels, rate = self.info.channels, self.info.sample_rate
        for packet in self._container.demux(self._stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                self.damaged += 1
                length = round((packet.duration or 0) * packet.time_base * rate)
                if length:
                    yield None, np.zeros((channels, length), np.float32)
                continue
            for frame in decoded:
                yield frame.pts, self._samples(frame)

    def _samples(self, frame) -> np.ndarray:
        """One decoded ``av.AudioFrame`` as float32 ``[channels, n]``."""
        if frame.sample_rate != self.info.sample_rate or len(frame.layout.channels) != self.info.channels:
            raise ApolloError(f"{self.path}: sample rate or channel count changes inside the file "
                              f"({self.info.sample_rate} Hz x {self.info.channels} -> {frame.sample_rate} Hz x "
                              f"{len(frame.layout.channels)}); split it first")
        data = frame.to_ndarray()
        if not frame.format.is_planar:
            data = data.reshape(-1, self.info.channels).T
        out = data.astype(np.float32, copy=False)
        scale = _INT_SCALE.get(frame.format.name.rstrip("p"))
        if scale is not None:  # offsets are small integers and scales powers of two: exact in float32
            out = (out + np.float32(scale[1])) * np.float32(scale[0]) if scale[1] else out * np.float32(scale[0])
        return out

    def _report(self) -> None:
        decoded = min(self.reached, self.info.length) if self._crop else self.reached
        if self.damaged:
            warnings.warn(f"{self.path}: {self.damaged} damaged packets could not be decoded; replaced by silence "
                          "of the same length", ApolloWarning, stacklevel=4)
        if self.info.length_exact and decoded < self.info.length:
            rate = self.info.sample_rate
            warnings.warn(f"{self.path}: file ends early: read {decoded} of the {self.info.length} samples its "
                          f"header declares ({decoded / rate:.2f} of {self.info.length / rate:.2f} s); "
                          "using what is there", ApolloWarning, stacklevel=4)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.splitlines()[0] if text else type(error).__name__


def _itunes_length(tag: str | None) -> int | None:
    """The original sample count in an iTunes ``iTunSMPB`` tag (`` 0 priming padding length ...`` in hex)."""
    try:
        length = int(tag.split()[3], 16)
    except (AttributeError, IndexError, ValueError):
        return None
    return length if length > 0 else None


def _pcm_header_length(path: Path, fmt: str) -> int | None:
    """Samples (per channel) a WAV ``data`` chunk or an AIFF ``COMM`` chunk declares (None: unknown or streamed)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
            if fmt == "wav" and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                return _wav_length(handle)
            if fmt == "aiff" and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_length(handle)
    except (OSError, struct.error):
        pass
    return None


def _chunks_of(handle, byteorder: str) -> Iterator[tuple[bytes, int, int]]:
    """(id, size, offset of the body) of each RIFF/IFF chunk after the 12-byte file header."""
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return
        chunk_id, size = header[:4], struct.unpack(byteorder + "I", header[4:])[0]
        offset = handle.tell()
        yield chunk_id, size, offset
        handle.seek(offset + size + (size & 1))


def _wav_length(handle) -> int | None:
    block_align = None
    for chunk_id, size, offset in _chunks_of(handle, "<"):
        if chunk_id == b"fmt ":
            handle.seek(offset + 12)
            block_align = struct.unpack("<H", handle.read(2))[0]
        elif chunk_id == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):  # streamed WAV: no length
                return None
            return size // block_align
    return None


def _aiff_length(handle) -> int | None:
    for chunk_id, _, offset in _chunks_of(handle, ">"):
        if chunk_id == b"COMM":
            handle.seek(offset + 2)
            return struct.unpack(">I", handle.read(4))[0]
    return None
