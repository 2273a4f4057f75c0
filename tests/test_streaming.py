"""StreamingRestorer and `apollo stream`: chunked output equals the offline causal pass, state, latency, CLI."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from apollo_restore.audio import resample
from apollo_restore.checkpoint import save_model
from apollo_restore.cli import main
from apollo_restore.errors import ApolloError
from apollo_restore.evaluate.stream_timing import run_stream
from apollo_restore.gate import Gate, GateConfig
from apollo_restore.streaming import StreamingRestorer
from conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")

HOP = 441


def offline(model, audio: np.ndarray, gate: Gate | None = None, running: bool = False) -> np.ndarray:
    """The whole-signal causal pass: ``[channels, n]`` -> ``[channels, n]``. With ``gate``: the whole signal's
    cut estimate, or (``running``) each frame's estimate from the frames up to it, as a stream has it."""
    post = None if gate is None else gate.bind(channels=audio.shape[0])
    if gate is not None and running:
        tracker = gate.tracker()
        post = lambda spec, out: gate(spec, out, tracker.running(spec))  # noqa: E731
    with torch.no_grad():
        return model(torch.from_numpy(audio)[None], post)[0].numpy()


def stream(engine: StreamingRestorer, audio: np.ndarray, sizes: list[int], flush: bool = True) -> list[np.ndarray]:
    """Feed ``audio`` in chunks of ``sizes`` (cycled), then flush (if asked); the returned blocks in order."""
    out, pos, i = [], 0, 0
    while pos < audio.shape[1]:
        out.append(engine.process(audio[:, pos : pos + sizes[i % len(sizes)]]))
        pos += sizes[i % len(sizes)]
        i += 1
    return [*out, engine.flush()] if flush else out


def signal(channels: int, length: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, length)) * 0.3).astype(np.float32)


def cut_above(audio: np.ndarray, hz: float) -> np.ndarray:
    """``audio`` with nothing above ``hz`` (an MP3-like cliff: the gate opens above it)."""
    spectrum = np.fft.rfft(audio, axis=1)
    spectrum[:, np.fft.rfftfreq(audio.shape[1], 1 / 44100) > hz] = 0
    return np.fft.irfft(spectrum, n=audio.shape[1], axis=1).astype(np.float32)


def band_energy_db(audio: np.ndarray, low_hz: float) -> float:
    """Energy above ``low_hz`` relative to the whole signal's, in dB."""
    power = np.abs(np.fft.rfft(audio, axis=1)) ** 2
    return float(10 * np.log10(power[:, np.fft.rfftfreq(audio.shape[1], 1 / 44100) > low_hz].sum() / power.sum()))


def scramble_head(model):
    """A residual head that writes: random merge weights instead of the identity's zeros."""
    with torch.no_grad():
        for projection in model.merge.projections:
            projection.weight.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def causal():
    return tiny_model(3, causal=True, num_layers=2)


@pytest.mark.parametrize(
    ("channels", "length", "sizes"),
    [
        (2, 20 * HOP + 123, "random"),  # random sizes from 1 sample to 0.1 s, length not a multiple of the hop
        (1, 12 * HOP, [HOP]),  # one frame per call
        (3, 9 * HOP + 1, [0, 7, 1000, 2 * HOP + 5]),  # empty chunks too
        (2, 15 * HOP - 1, [10**6]),  # the whole signal in one chunk
        (1, 300, [17]),  # shorter than a window
        (2, 11 * HOP + 3, "residual"),  # a level-scaled residual head, no gate: it writes every bin
        (2, 30 * HOP + 7, "shipped"),  # the shipped models' head and gate, on an MP3-like cut at 8 kHz
    ],
)
def test_stream_equals_offline_causal_pass(causal, channels, length, sizes):
    audio, gate, case = signal(channels, length), None, sizes
    if case in ("residual", "shipped"):
        causal, sizes = scramble_head(tiny_model(5, causal=True, residual=True)), [100, 1, 3000]
    if case == "shipped":  # the bundled models' gate (every rule on), on input it opens for
        audio, gate = cut_above(audio, 8000), Gate(GateConfig(), causal.config)
    if case == "random":
        sizes = [int(n) for n in np.random.default_rng(1).integers(1, 4410, 200)]
    restored = np.concatenate(stream(StreamingRestorer(causal, "cpu", gate=gate), audio, sizes), axis=1)
    expected = offline(causal, audio, gate, running=True)
    assert restored.shape == expected.shape
    assert np.abs(restored - expected).max() <= 1e-4
    assert np.abs(expected - audio).max() > 1e-3  # the model did change the signal
    if gate is not None:  # and wrote the band the cut removed: from nothing to a real band
        assert band_energy_db(audio, 8500) < -100 and band_energy_db(expected, 8500) > -40
        assert np.abs(expected - audio).max() > 0.05


def test_gated_model_streams_with_a_running_cut_off_estimate():
    """An MP3-like input (nothing above 8 kHz): the stream estimates the cut-off from the frames so far. After
    0.1 s it is within two bins of the whole-signal estimate, so the stream differs from the offline pass only
    at the edge of the cut band; the estimate is part of the saved state, so a resumed stream is exact."""
    model = scramble_head(tiny_model(5, causal=True, residual=True))
    gate = Gate(GateConfig(), model.config)
    audio = cut_above(signal(2, 60 * HOP), 8000)
    spec = model.framing.stft(torch.from_numpy(audio))
    whole, weight = (t[0] for t in gate.estimate(spec, channels=2))
    running, running_weight = (t[0] for t in gate.tracker().running(spec))
    assert abs(int(whole) - 8000 // 50) <= 8 and weight == 1  # a clear cliff at 8 kHz
    assert (running[10:] - whole).abs().max() <= 2 and (running_weight[10:] == 1).all()
    assert running[0] != whole  # the first frame alone: no estimate yet

    expected = offline(model, audio, gate)
    uninterrupted = np.concatenate(stream(StreamingRestorer(model, "cpu", gate=gate), audio, [HOP]), axis=1)
    written = np.abs(expected - audio).max()
    assert written > 0.05  # the gated head did write the cut band
    assert np.abs(uninterrupted[:, 10 * HOP :] - expected[:, 10 * HOP :]).max() < 0.1 * written

    engine = StreamingRestorer(model, "cpu", gate=gate)
    first = stream(engine, audio[:, : 30 * HOP], [HOP], flush=False)
    state = engine.state_dict()
    resumed = StreamingRestorer(model, "cpu", gate=gate)
    resumed.load_state_dict(state)
    restored = np.concatenate(first + stream(resumed, audio[:, 30 * HOP :], [HOP]), axis=1)
    assert np.abs(restored - uninterrupted).max() <= 1e-6
    del state["pass_band"]
    with pytest.raises(ApolloError, match="does not match"):
        StreamingRestorer(model, "cpu", gate=gate).load_state_dict(state)


def test_one_sample_chunks_and_exact_latency(causal):
    """Feeding sample by sample: equal to offline, and each output sample arrives within one window."""
    audio = signal(2, 6 * HOP + 200, seed=2)
    engine = StreamingRestorer(causal, "cpu")
    blocks = stream(engine, audio, [1])
    restored = np.concatenate(blocks, axis=1)
    assert np.abs(restored - offline(causal, audio)).max() <= 1e-4
    # blocks[i] is what the call after sample i returned: find when each output sample became available
    emitted = np.cumsum([b.shape[1] for b in blocks[:-1]])
    arrival = np.searchsorted(emitted, np.arange(emitted[-1]), side="right")  # input index at release
    delay = arrival - np.arange(emitted[-1])
    assert engine.latency_samples == causal.config.n_fft - 1 == 881
    assert delay.max() == engine.latency_samples
    assert delay.min() == causal.config.n_fft - HOP
    assert engine.latency_ms == pytest.approx(1000 * 881 / 44100)


def test_offline_tail_is_covered_by_two_frames():
    """A length that is not a multiple of the hop must not leave a lone window edge (it divided by ~1e-9)."""
    model = tiny_model(0, causal=True)
    for length in (HOP * 20 - 1, HOP * 20 - 3, HOP * 20 + 1):
        out = offline(model, signal(1, length, seed=length))
        assert np.abs(out[:, -HOP:]).max() < 5 * np.abs(out[:, :-HOP]).max()


def test_saved_state_resumes_identically(causal, tmp_path):
    audio = signal(2, 14 * HOP + 77, seed=4)
    sizes = [333]  # the same chunk boundaries before and after the cut, so the same arithmetic
    whole = np.concatenate(stream(StreamingRestorer(causal, "cpu"), audio, sizes), axis=1)

    first = StreamingRestorer(causal, "cpu")
    cut = 20 * 333  # mid-frame: input, overlap-add and conv state all pending
    head = stream(first, audio[:, :cut], sizes, flush=False)  # the stream goes on elsewhere
    save_file(first.state_dict(), str(tmp_path / "stream.safetensors"))
    second = StreamingRestorer(causal, "cpu")
    second.load_state_dict(load_file(str(tmp_path / "stream.safetensors")))
    assert second.frames_done == first.frames_done > 0
    rest = stream(second, audio[:, cut:], sizes)
    resumed = np.concatenate(head + rest, axis=1)
    np.testing.assert_array_equal(resumed, whole)

    other = StreamingRestorer(tiny_model(0, causal=True, feature_dim=8, num_heads=2), "cpu")
    with pytest.raises(ApolloError, match="does not match"):
        other.load_state_dict(first.state_dict())


def test_reset_and_flush_start_a_new_stream(causal):
    audio = signal(1, 8 * HOP + 5, seed=5)
    expected = offline(causal, audio)
    engine = StreamingRestorer(causal, "cpu")
    engine.process(signal(2, 3000, seed=6))  # a different stream, abandoned
    engine.reset()
    first = np.concatenate(stream(engine, audio, [500]), axis=1)
    second = np.concatenate(stream(engine, audio, [123]), axis=1)  # flush reset it
    np.testing.assert_allclose(first, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(second, first, atol=1e-6, rtol=0)


def test_gain_is_undone_on_the_way_out(causal):
    audio = signal(1, 10 * HOP, seed=7) * 0.05
    out = np.concatenate(stream(StreamingRestorer(causal, "cpu", gain=8.0), audio, [1000]), axis=1)
    np.testing.assert_allclose(out, offline(causal, audio * 8.0) / 8.0, atol=1e-5, rtol=0)
    assert np.abs(out - offline(causal, audio)).max() > 1e-4  # the model is not scale-equivariant


def test_refusals(causal):
    with pytest.raises(ApolloError, match="causal"):
        StreamingRestorer(tiny_model(0), "cpu")
    with pytest.raises(ApolloError, match="gain"):
        StreamingRestorer(causal, "cpu", gain=0.0)
    engine = StreamingRestorer(causal, "cpu")
    with pytest.raises(ApolloError, match=r"\[channels, samples\]"):
        engine.process(np.zeros(100, np.float32))
    engine.process(np.zeros((2, 100), np.float32))
    with pytest.raises(ApolloError, match="2 channels"):
        engine.process(np.zeros((1, 100), np.float32))
    with pytest.raises(ApolloError, match="NaN"):
        engine.process(np.full((2, 10), np.nan, np.float32))
    with pytest.raises(ApolloError, match="integers"):
        engine.process(np.zeros((2, 10), np.int16))


def test_run_stream_times_every_call(causal):
    audio = signal(2, 30 * HOP, seed=8)
    written: list[np.ndarray] = []
    chunks = (audio[:, i : i + HOP] for i in range(0, audio.shape[1], HOP))
    stats = run_stream(StreamingRestorer(causal, "cpu"), chunks, written.append, chunk_ms=10.0)
    np.testing.assert_allclose(np.concatenate(written, axis=1), offline(causal, audio), atol=1e-4, rtol=0)
    assert stats.samples == audio.shape[1] and stats.channels == 2
    assert len(stats.lag_ms) == len(stats.frame_ms) == len(stats.frame_cpu_ms) == 30  # one frame per hop of input
    assert all(t > 0 for t in stats.frame_ms) and sum(stats.frame_cpu_ms) > 0 and stats.rtf > 0
    assert min(stats.lag_ms) >= 0
    assert "median" in stats.summary() and "19.98 ms algorithmic" in stats.summary()


@pytest.fixture(scope="module")
def causal_checkpoint(tmp_path_factory, causal) -> Path:
    return save_model(causal, tmp_path_factory.mktemp("ckpt") / "causal")


def test_cli_streams_a_file(causal, causal_checkpoint, tmp_path, capsys):
    audio = signal(2, 25 * HOP + 9, seed=9)
    sf.write(tmp_path / "in.wav", audio.T, 44100, subtype="FLOAT")
    dst = tmp_path / "out.wav"
    code = main(["stream", str(tmp_path / "in.wav"), "-o", str(dst), "--checkpoint", str(causal_checkpoint),
                 "--chunk-ms", "7", "--device", "cpu"])
    assert code == 0
    restored, rate = sf.read(dst, dtype="float32", always_2d=True)
    assert rate == 44100
    np.testing.assert_allclose(restored.T, offline(causal, audio), atol=1e-4, rtol=0)
    err = capsys.readouterr().err
    assert "compute per frame: median" in err and "real-time factor" in err and "latency" in err


def test_cli_resamples_a_file_at_another_rate(causal, causal_checkpoint, tmp_path, capsys):
    audio = signal(1, 9000, seed=11)
    sf.write(tmp_path / "in48k.wav", audio.T, 48000, subtype="FLOAT")
    dst = tmp_path / "out.wav"
    args = ["stream", str(tmp_path / "in48k.wav"), "-o", str(dst), "--checkpoint", str(causal_checkpoint),
            "--device", "cpu"]
    assert main(args) == 0
    restored, rate = sf.read(dst, dtype="float32", always_2d=True)
    at_model_rate = resample(audio, 48000, 44100)
    assert rate == 44100 and restored.shape[0] == at_model_rate.shape[1]
    np.testing.assert_allclose(restored.T, offline(causal, at_model_rate), atol=1e-4, rtol=0)
    capsys.readouterr()


def test_cli_refuses_bad_input_without_writing(causal_checkpoint, tmp_path, capsys):
    sf.write(tmp_path / "in.wav", signal(1, 5000).T, 44100)
    noncausal = save_model(tiny_model(0), tmp_path / "offline-model")
    cases = [
        (["--checkpoint", str(noncausal), "-o", str(tmp_path / "a.wav")], "causal model"),
        (["--raw", "--channels", "1", "--rate", "48000", "--checkpoint", str(causal_checkpoint)], "48000 Hz"),
        (["--raw", "--checkpoint", str(causal_checkpoint)], "--channels"),
        (["--checkpoint", str(causal_checkpoint)], "-o OUTPUT"),
        (["--checkpoint", str(causal_checkpoint), "-o", str(tmp_path / "a.mp3")], ".wav or .flac"),
    ]
    for extra, message in cases:
        assert main(["stream", str(tmp_path / "in.wav"), "--device", "cpu", *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "offline-model"]


def test_cli_raw_pipe_stdin_to_stdout(causal, causal_checkpoint):
    """A real pipe: f32le in on stdin, f32le out on stdout, the report on stderr."""
    audio = signal(2, 18 * HOP + 100, seed=10)
    raw = np.ascontiguousarray(audio.T, dtype="<f4").tobytes()
    done = subprocess.run(
        [sys.executable, "-m", "apollo_restore", "stream", "--raw", "--channels", "2", "--rate", "44100", "-",
         "--checkpoint", str(causal_checkpoint), "--device", "cpu", "--chunk-ms", "10"],
        input=raw, capture_output=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    restored = np.frombuffer(done.stdout, dtype="<f4").reshape(-1, 2).T
    np.testing.assert_allclose(restored, offline(causal, audio), atol=1e-4, rtol=0)
    assert b"real-time factor" in done.stderr



def test_cli_raw_input_torn_inside_a_frame_is_one_line_error(causal_checkpoint, monkeypatch, capsys):
    raw = np.zeros((3 * HOP, 2), "<f4").tobytes()[:-3]
    stdout = io.BytesIO()
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(raw)))
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=stdout))
    args = ["stream", "--raw", "--channels", "2", "--rate", "44100", "-", "--checkpoint", str(causal_checkpoint),
            "--device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "inside a frame" in err and len(err.splitlines()) == 1, err
    assert 0 < len(stdout.getvalue()) < len(raw)  # what was final before the tear had been passed on
