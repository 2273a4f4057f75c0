"""Decoding real encoder output (`lame`, `ffmpeg`): equal to FFmpeg's own decode, gapless, block-size independent."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from apollo_restore.audio import audio_info, iter_audio_blocks, read_audio
from apollo_restore.errors import ApolloError, ApolloWarning
from codec_files import (
    LOSSY_MP3,
    NO_LENGTH_IN_HEADER,
    RATE,
    RECIPES,
    SECONDS,
    encode,
    ffmpeg_decode,
    lag,
    original,
)

#: LAME's encoder delay + the MP3 decoder's delay: where no header records them, the signal starts this late
MP3_DELAY = 576 + 529
#: block sizes around 2**18, where libsndfile's block-wise MP3 reads went wrong, and tiny ones (10 ms)
BLOCK_SIZES = (441, 1152, (1 << 18) - 1, 1 << 18, (1 << 18) + 1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codecs")
    return lambda name: encode(name, folder)


@pytest.mark.parametrize("name", RECIPES)
def test_decode_equals_ffmpeg_and_has_the_original_length(files, name):
    path = files(name)
    _, rate, gapless = RECIPES[name]
    audio, sr = read_audio(path)
    ffmpeg = ffmpeg_decode(path, 2)
    assert sr == rate and audio.shape[0] == 2 and audio.dtype == np.float32
    n = audio.shape[1]
    if gapless:
        assert n == round(SECONDS * rate)  # the encoder's delay and padding are gone
    if name.endswith(".m4a") and not name.endswith("alac.m4a"):
        assert ffmpeg.shape[1] - n in range(1, 1024)  # FFmpeg keeps AAC's end padding; we drop it
    else:
        assert ffmpeg.shape[1] == n
    assert np.abs(audio - ffmpeg[:, :n]).max() < 1e-5  # same samples (FFmpeg versions may round differently)


@pytest.mark.parametrize("name", [n for n, (_, rate, gapless) in RECIPES.items() if gapless and rate == RATE])
def test_gapless_files_are_sample_aligned_with_the_original(files, name):
    audio, _ = read_audio(files(name))
    clean = original()
    assert [lag(clean[c], audio[c]) for c in range(2)] == [0, 0]
    for span in (slice(0, 1 << 18), slice(1 << 18, None)):  # no drift, before and after 2**18
        assert lag(clean[0, span], audio[0, span]) == 0


def test_mp3_without_a_lame_header_keeps_the_codec_delay(files):
    """Where no header says, nothing is trimmed: the documented 1105-sample delay, as FFmpeg decodes it."""
    audio, _ = read_audio(files("lame-no-header.mp3"))
    assert lag(original()[0], audio[0]) == MP3_DELAY
    assert audio.shape[1] > SECONDS * RATE + MP3_DELAY
    info = audio_info(files("lame-no-header.mp3"))
    assert not info.length_exact and abs(info.length - audio.shape[1]) < 2 * 1152


@pytest.mark.parametrize("name", RECIPES)
def test_info_comes_from_the_header_and_matches_the_decode(files, name):
    path = files(name)
    info = audio_info(path)
    audio, sr = read_audio(path)
    assert (info.sample_rate, info.channels) == (sr, 2)
    if name in NO_LENGTH_IN_HEADER:
        assert not info.length_exact and abs(info.length - audio.shape[1]) < 0.05 * audio.shape[1]
    else:
        assert info.length_exact and info.length == audio.shape[1]


@pytest.mark.parametrize("name", [*LOSSY_MP3, "ffmpeg-aac128.m4a", "ffmpeg-adts.aac", "ffmpeg-opus96.opus",
                                  "ffmpeg-vorbis.ogg",
                                  "ffmpeg.flac", "ffmpeg-s24.aiff"])
def test_block_wise_reads_equal_the_whole_file_decode(files, name):
    path = files(name)
    whole, _ = read_audio(path)
    for size in BLOCK_SIZES:
        starts, blocks = zip(*iter_audio_blocks(path, size), strict=True)
        assert all(b.shape[1] == size for b in blocks[:-1]) and 0 < blocks[-1].shape[1] <= size
        assert list(starts) == list(range(0, whole.shape[1], size))
        assert np.array_equal(np.concatenate(blocks, axis=1), whole), size


@pytest.mark.parametrize("name", ["lame-vbr-V4.mp3", "ffmpeg-aac128.m4a", "ffmpeg.flac", "ffmpeg-s24.aiff",
                                  "ffmpeg-alac.m4a"])
def test_segments_equal_the_whole_file_decode(files, name):
    """Seeking (lossless) or decoding from the start (lossy) gives the very samples of the whole decode."""
    path = files(name)
    whole, _ = read_audio(path)
    for start in (1, 4095, 100_000, (1 << 18) + 3, whole.shape[1] - 100):
        segment, _ = read_audio(path, start, 3000)
        assert np.array_equal(segment, whole[:, start : start + 3000]), start


def test_pcm_formats_read_at_full_precision(tmp_path):
    clean = original(1.0)
    for subtype, tolerance in (("PCM_U8", 1 / 128), ("PCM_16", 1 / 32768), ("PCM_24", 2**-23), ("FLOAT", 0),
                               ("DOUBLE", 0)):
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, clean.T, RATE, subtype=subtype)
        audio, _ = read_audio(path)
        expected = sf.read(path, dtype="float32", always_2d=True)[0].T  # libsndfile is exact on PCM
        assert np.abs(audio - expected).max() <= 1e-7 and np.abs(audio - clean).max() <= tolerance, subtype


def test_truncated_wav_warns_with_how_much_was_read(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, original(2.0).T, RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still declares 2 s
    with pytest.warns(ApolloWarning, match=r"read 44\d\d\d of the 88200 samples its header declares"):
        audio, _ = read_audio(path)
    assert 44000 < audio.shape[1] < 44200


def test_truncated_mp3_warns_and_complete_files_do_not(files, tmp_path):
    path = files("lame-vbr-V4.mp3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_audio(path)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(ApolloWarning, match="file ends early"):
        read_audio(cut)


@pytest.mark.parametrize("content", [b"this is a text file, not audio\n" * 20, b""])
def test_text_named_mp3_is_not_audio(tmp_path, content, capfd):
    path = tmp_path / "notes.mp3"
    path.write_bytes(content)
    with pytest.raises(ApolloError, match="not an audio file"):
        read_audio(path)
    assert capfd.readouterr().err == ""  # no decoder chatter


def test_nan_samples_are_refused(tmp_path):
    audio = original(0.5)
    audio[1, 1000] = np.nan
    sf.write(tmp_path / "nan.wav", audio.T, RATE, subtype="FLOAT")
    with pytest.raises(ApolloError, match="NaN"):
        read_audio(tmp_path / "nan.wav")
