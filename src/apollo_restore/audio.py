"""Audio I/O: reading any file (decoded by `apollo_restore.decode`), atomic writing, resampling, channel layout.

Audio arrays are float32 numpy arrays shaped ``[channels, samples]`` everywhere in this package.
Every failure a user can cause (missing file, not audio, empty, NaN samples, unwritable output) is raised
as :class:`ApolloError` with a one-line message.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from apollo_restore.decode import AudioInfo, AudioReader
from apollo_restore.errors import ApolloError
from apollo_restore.files import discard, publish, temp_beside

#: extensions `apollo restore` picks up when given a folder
INPUT_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".mp3", ".m4a", ".mp4", ".aac", ".ogg", ".oga", ".opus")
#: output container -> default sample format (float WAV cannot clip; FLAC has no float format)
DEFAULT_SUBTYPE = {".wav": "FLOAT", ".flac": "PCM_24"}


def open_audio(path: str | os.PathLike) -> AudioReader:
    """Open an audio file of any format FFmpeg reads: ``.info`` (header facts), ``.blocks(n)`` (one decode pass).

    Raises ApolloError with a one-line reason if it is missing, not a regular file, not audio or empty."""
    reader = AudioReader(path)
    if reader.info.length_exact and reader.info.length == 0:
        reader.close()
        raise ApolloError(f"{reader.path}: holds no audio samples")
    return reader


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header facts of an audio file (nothing is decoded); raises ApolloError if it is missing, unreadable or empty."""
    with open_audio(path) as reader:
        return reader.info


def iter_audio_blocks(path: str | os.PathLike, block_size: int, start: int = 0
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_sample, block [channels, n])`` from sample ``start`` to the end without loading the file.

    The blocks concatenate to exactly the whole-file decode, for any ``block_size``. Raises ApolloError on
    non-finite samples or a file without samples; warns (`ApolloWarning`) about damaged or truncated data.
    """
    with open_audio(path) as reader:
        position = start
        for block in reader.blocks(block_size, start):
            yield position, block
            position += block.shape[1]
    if position == 0:
        raise ApolloError(f"{reader.path}: holds no audio samples")


def read_audio(path: str | os.PathLike, start: int = 0, length: int | None = None) -> tuple[np.ndarray, int]:
    """Read a file (or ``length`` samples from ``start``) as float32 ``[channels, samples]`` and its sample rate.

    A segment holds exactly the samples of the whole-file decode at those positions (fewer if the file ends)."""
    with open_audio(path) as reader:
        audio = reader.read(start, length)
    if audio.shape[1] == 0 and start == 0:
        raise ApolloError(f"{reader.path}: holds no audio samples")
    return audio, reader.info.sample_rate


def as_channels_first(audio: np.ndarray) -> tuple[np.ndarray, bool]:
    """``[samples]`` or ``[channels, samples]`` -> float32 ``[channels, samples]``, and whether it was 1-D."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio[None].astype(np.float32, copy=False), True
    if audio.ndim != 2:
        raise ApolloError(f"audio must be [samples] or [channels, samples], got shape {audio.shape}")
    if audio.shape[1] == 0:
        raise ApolloError("audio has no samples")
    return audio.astype(np.float32, copy=False), False


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Crop ``[channels, n]`` to ``length`` samples or zero-pad its tail up to it (never wraps around)."""
    if audio.shape[1] >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[1])))


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality (soxr VHQ) resampling of ``[channels, samples]``; a no-op when the rates match."""
    if sr_in == sr_out:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), sr_in, sr_out, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


class ResampleStream:
    """Chunked soxr resampling of ``[channels, n]`` blocks; the concatenated output equals one-shot use."""

    def __init__(self, sr_in: int, sr_out: int, channels: int):
        self.identity = sr_in == sr_out
        self._stream = None if self.identity else soxr.ResampleStream(sr_in, sr_out, channels, "float32", "VHQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return block
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T, dtype=np.float32), last=last)
        return np.ascontiguousarray(out.T)


def output_subtype(path: str | os.PathLike, subtype: str | None) -> str:
    """The sample format to write ``path`` with: the user's choice, validated, or the container default."""
    suffix = Path(path).suffix.lower()
    if suffix not in DEFAULT_SUBTYPE:
        raise ApolloError(f"{path}: output must be .wav or .flac")
    subtype = (subtype or DEFAULT_SUBTYPE[suffix]).upper()
    if not sf.check_format(suffix.lstrip(".").upper(), subtype):
        raise ApolloError(f"{path}: sample format {subtype} is not possible in {suffix} files")
    return subtype


class AtomicAudioWriter:
    """Write audio block by block to a temporary file beside ``path``; rename it into place on success.

    An existing file at ``path`` is untouched until the whole new file is written; on any error the
    temporary file is removed. Integer formats clip; the number of clipped samples is counted.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, subtype: str | None = None):
        self.path = Path(path)
        self.subtype = output_subtype(self.path, subtype)
        self.clipped = 0
        directory = self.path.parent
        if not directory.exists():
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ApolloError(f"{directory}: cannot create output folder ({error.strerror})") from None
        self._tmp = temp_beside(self.path)
        try:
            self._file = sf.SoundFile(str(self._tmp), "w", samplerate=sample_rate, channels=channels,
                                      subtype=self.subtype, format=self.path.suffix.lstrip(".").upper())
        except Exception as error:
            discard(self._tmp)
            raise ApolloError(f"{self.path}: cannot write audio ({error})") from None

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` ``[channels, n]``."""
        if not self.subtype.startswith(("FLOAT", "DOUBLE")):
            over = np.abs(block) > 1.0
            self.clipped += int(over.sum())
            block = np.clip(block, -1.0, 1.0)
        try:
            self._file.write(np.ascontiguousarray(block.T))
        except Exception as error:
            raise self._failure(error, block.nbytes) from None

    def _failure(self, error: Exception, size: int) -> ApolloError:
        """libsndfile reports a full disk as "System error.": tell it by the space left on the file system."""
        try:
            full = shutil.disk_usage(self._tmp.parent).free < max(size, 1 << 16)
        except OSError:
            full = False
        if full:
            return ApolloError(f"{self.path}: disk full (no space left on {self._tmp.parent})")
        return ApolloError(f"{self.path}: write failed ({error})")

    def __enter__(self) -> AtomicAudioWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._file.close()  # writes the header and what is buffered
        except Exception as error:
            discard(self._tmp)
            if exc_type is None:
                raise self._failure(error, 0) from None
            return
        if exc_type is None:
            publish(self._tmp, self.path)
        else:
            discard(self._tmp)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> int:
    """Atomically write ``[channels, samples]`` to a .wav/.flac file; returns the count of clipped samples."""
    audio, _ = as_channels_first(audio)
    with AtomicAudioWriter(path, sample_rate, audio.shape[0], subtype) as writer:
        writer.write(audio)
    return writer.clipped
