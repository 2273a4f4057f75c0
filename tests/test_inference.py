import itertools

import numpy as np
import pytest
import torch

from apollo_restore.errors import ApolloError
from apollo_restore.gate import Gate, GateConfig
from apollo_restore.inference import Restorer, pick_device, plan_blocks
from conftest import tiny_model


def _full_and_blocked(model, audio, block_seconds, gate=None):
    with torch.no_grad():
        full = model(torch.from_numpy(audio)[None], None if gate is None else gate.bind(channels=audio.shape[0]))
    full = full[0].numpy()
    restorer = Restorer(model, "cpu", block_seconds, gate)
    blocked = np.concatenate(list(restorer.run_blocks(lambda a, b: audio[:, a:b], audio.shape[1], 1.0)), axis=1)
    return full, blocked


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shipped_head", [False, True], ids=["plain", "residual-gated"])
def test_block_processing_equals_one_full_pass(causal, shipped_head):
    # two layers: a receptive field of +-36 frames (non-causal) / 72 past frames (causal)
    model = tiny_model(causal=causal, num_layers=2, residual=shipped_head)
    gate = Gate(GateConfig(), model.config) if shipped_head else None
    with torch.no_grad():
        for projection in model.merge.projections:
            projection.weight.normal_(0, 0.5)
    audio = (np.random.default_rng(1).standard_normal((2, 3 * 44100 + 123)) * 0.1).astype(np.float32)
    if shipped_head:  # an MP3-like input: nothing above 8 kHz, so the gate's cut-off is mid-band
        spectrum = np.fft.rfft(audio, axis=1)
        spectrum[:, np.fft.rfftfreq(audio.shape[1], 1 / 44100) > 8000] = 0
        audio = np.fft.irfft(spectrum, n=audio.shape[1], axis=1).astype(np.float32)
    for block_seconds in (0.25, 0.61, 1.0, 5.0):
        full, blocked = _full_and_blocked(model, audio, block_seconds, gate)
        assert blocked.shape == full.shape
        assert np.abs(blocked - full).max() <= 1e-4, block_seconds
    assert np.abs(full - audio).max() > 1e-3  # the head did write (through the gate: above its cut-off)


def test_blocks_without_context_would_differ():
    """The equality above is not vacuous: cutting blocks without context changes the output."""
    model = tiny_model(num_layers=2)
    audio = (np.random.default_rng(2).standard_normal((1, 2 * 44100)) * 0.1).astype(np.float32)
    with torch.no_grad():
        full = model(torch.from_numpy(audio)[None])[0].numpy()
        half = 44100 // model.config.hop * model.config.hop
        naive = np.concatenate([model(torch.from_numpy(audio[:, :half])[None])[0].numpy(),
                                model(torch.from_numpy(audio[:, half:])[None])[0].numpy()], axis=1)
    assert np.abs(naive - full).max() > 1e-4


def test_block_plan_starts_on_hops_and_covers_everything():
    model = tiny_model()
    config = model.config
    blocks = plan_blocks(100_000, config, 0.5)
    assert blocks[0].keep_start == 0 and blocks[-1].keep_stop == 100_000
    for prev, nxt in itertools.pairwise(blocks):
        assert prev.keep_stop == nxt.keep_start
    for block in blocks:
        assert block.start % config.hop == 0
        past, future = config.context_frames
        assert block.keep_start - block.start >= min(block.keep_start, past * config.hop)
        assert block.stop - block.keep_stop >= min(100_000 - block.keep_stop, future * config.hop)


def test_restore_array_keeps_shape_rate_and_level():
    restorer = Restorer(tiny_model(), "cpu")
    rng = np.random.default_rng(3)
    stereo = (rng.standard_normal((2, 30000)) * 0.2).astype(np.float32)
    out = restorer.restore_array(stereo, 44100)
    assert out.shape == stereo.shape and out.dtype == np.float32
    # the model sees a peak-normalised input: scaling the input scales the output by the same factor
    np.testing.assert_allclose(restorer.restore_array(stereo * 0.01, 44100), out * 0.01, atol=1e-6)
    mono = stereo[0]
    assert restorer.restore_array(mono, 44100).shape == mono.shape
    six = np.tile(stereo, (3, 1))
    out6 = restorer.restore_array(six, 44100)
    np.testing.assert_allclose(out6[4:6], out, atol=1e-5)
    at48k = restorer.restore_array(stereo, 48000)
    assert at48k.shape == stereo.shape


def test_silence_stays_silent_and_bad_arrays_are_refused():
    restorer = Restorer(tiny_model(), "cpu")
    assert not restorer.restore_array(np.zeros((2, 5000), np.float32), 44100).any()
    bad = np.zeros((2, 5000), np.float32)
    bad[1, 7] = np.nan
    with pytest.raises(ApolloError, match="NaN"):
        restorer.restore_array(bad, 44100)
    with pytest.raises(ApolloError):
        restorer.restore_array(np.zeros((2, 0), np.float32), 44100)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device(None).type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ApolloError, match="no CUDA"):
            pick_device("cuda")
    with pytest.raises(ApolloError):
        pick_device("tpu")


@pytest.mark.parametrize("block_seconds", [float("nan"), float("inf"), 0.0, -1.0])
def test_restorer_refuses_a_block_length_that_is_not_a_positive_number(block_seconds):
    with pytest.raises(ApolloError, match="block_seconds"):
        Restorer(tiny_model(), "cpu", block_seconds)


def test_default_block_length_bounds_one_channels_activations():
    """By default a block is as long as one channel's residual stream fits BLOCK_BYTES, within 10-60 s."""
    from apollo_restore.inference import AUTO_BLOCK_SECONDS, BLOCK_BYTES, auto_block_seconds
    from apollo_restore.model import ApolloConfig

    lengths = {}
    for dim in (16, 64, 256, 384):
        config = ApolloConfig(feature_dim=dim)
        seconds = lengths[dim] = auto_block_seconds(config)
        assert AUTO_BLOCK_SECONDS[0] <= seconds <= AUTO_BLOCK_SECONDS[1]
        frames = seconds * config.sample_rate / config.hop
        assert frames * config.num_bands * dim * 4 <= BLOCK_BYTES or seconds == AUTO_BLOCK_SECONDS[0]
    assert lengths[16] == AUTO_BLOCK_SECONDS[1] and lengths[384] == AUTO_BLOCK_SECONDS[0]
    assert lengths[64] > lengths[256] > AUTO_BLOCK_SECONDS[0]
    model = tiny_model()
    assert Restorer(model, "cpu").block_seconds == auto_block_seconds(model.config)
