"""Discriminator, losses and the GAN step on tiny real networks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from apollo_restore.errors import ApolloError
from apollo_restore.gate import GateConfig
from apollo_restore.model import ApolloConfig
from apollo_restore.train.config import DiscriminatorConfig, ExperimentConfig, LossConfig, OptimConfig
from apollo_restore.train.discriminator import Discriminator
from apollo_restore.train.distributed import init_distributed
from apollo_restore.train.gan import GANTrainer
from apollo_restore.train.losses import (
    SpectralReconstructionLoss,
    adversarial_loss,
    discriminator_loss,
    feature_matching_loss,
    mean_logit,
)

SR = 44100


pytestmark = pytest.mark.usefixtures("single_thread")


def clips(batch: int = 1, seconds: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded, clean) ``[batch, 2, samples]``: tones + noise, degraded = low-passed at 4 kHz."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    freqs = 200 + 1800 * torch.rand(batch, 2, 1, generator=g)
    clean = 0.3 * torch.sin(2 * torch.pi * freqs * t) + 0.05 * torch.randn(batch, 2, t.numel(), generator=g)
    spec = torch.fft.rfft(clean)
    spec[..., torch.fft.rfftfreq(t.numel(), 1 / SR) > 4000] = 0
    return torch.fft.irfft(spec, n=t.numel()), clean


def tiny_experiment(**optim) -> ExperimentConfig:
    return ExperimentConfig(
        model=ApolloConfig(feature_dim=32, num_layers=1, num_heads=4),
        discriminator=DiscriminatorConfig(fft_sizes=(64, 256, 1024), hidden_channels=4),
        loss=LossConfig(fft_sizes=(64, 256, 1024)),
        optim=OptimConfig(**optim),
    )


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_discriminator_matches_table_one():
    d = Discriminator()
    assert d.num_parameters() == 2_771_503  # 7 resolutions x (4->8->16->32->64->128->256->1 3x3 convs)
    first = d.discriminators[0].hidden[0][0]
    assert first.in_channels == 4 and hasattr(first, "parametrizations")  # Re/Im x 2 channels, spectral norm
    assert [layer[0].stride for layer in d.discriminators[0].hidden] == [(1, 1), (2, 2)] * 3
    assert isinstance(d.discriminators[0].hidden[0][1], torch.nn.LeakyReLU)
    assert d.discriminators[0].hidden[0][1].negative_slope == 0.2


def test_discriminator_is_level_invariant_and_sees_both_channels():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(fft_sizes=(64, 512))).eval()
    _, x = clips(batch=2)
    logits, features = d(x)
    assert len(logits) == 2 and all(len(maps) == 6 for maps in features)
    assert logits[0].shape[:2] == (2, 1) and features[0][0].shape[:2] == (2, 8)
    scaled, _ = d(10 * x)
    for a, b in zip(logits, scaled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    swapped, _ = d(x.flip(1))
    assert not torch.allclose(logits[0], swapped[0])


def quiet_high_band(batch: int = 2, seconds: float = 0.5, seed: int = 0, db: float = -50.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(without, with) a noise band above 8 kHz ``db`` under the loud low band: ``[batch, 2, samples]`` each."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(batch, 2, int(seconds * SR), generator=g)
    high = torch.randn(batch, 2, low.shape[-1], generator=g)
    freqs = torch.fft.rfftfreq(low.shape[-1], 1 / SR)
    low = torch.fft.irfft(torch.fft.rfft(low) * (freqs < 8000), n=low.shape[-1])
    high = torch.fft.irfft(torch.fft.rfft(high) * (freqs >= 8000), n=low.shape[-1])
    return low, low + 10 ** (db / 20) * high * low.std() / high.std()


def test_log_magnitude_discriminator_is_level_invariant_and_sees_a_quiet_band():
    torch.manual_seed(0)
    config = DiscriminatorConfig(fft_sizes=(64, 512), hidden_channels=4, spectrum="log_magnitude")
    d = Discriminator(config).eval()
    assert d.discriminators[0].hidden[0][0].in_channels == 2  # one map per audio channel
    without, with_band = quiet_high_band()
    for a, b in zip(d(without)[0], d(1e-3 * without)[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    silent, _ = d(torch.zeros_like(without))
    assert all(torch.isfinite(t).all() for t in silent)

    def change(disc: Discriminator) -> float:
        """How much adding the -50 dB band moves the logits, relative to their spread."""
        with torch.no_grad():
            a, b = disc(without)[0][1], disc(with_band)[0][1]
        return float((a - b).abs().mean() / (a.std() + 1e-12))

    torch.manual_seed(0)
    paper = Discriminator(DiscriminatorConfig(fft_sizes=(64, 512), hidden_channels=4)).eval()
    assert change(d) > 10 * change(paper), (change(d), change(paper))


def test_log_magnitude_discriminator_learns_to_separate_a_missing_quiet_band():
    """A few discriminator steps: real clips carry a -40 dB high band, 'restored' ones lack it. The margin
    D(real) - D(restored) that the trainer records leaves chance (0) for the log-magnitude input."""
    torch.manual_seed(0)
    config = DiscriminatorConfig(fft_sizes=(512,), hidden_channels=4, spectrum="log_magnitude")
    d = Discriminator(config)
    opt = torch.optim.AdamW(d.parameters(), 1e-3, betas=(0.5, 0.99))
    for step in range(100):
        fake, real = quiet_high_band(seconds=0.25, seed=step, db=-40)
        logits, _ = d(torch.cat([fake, real]))
        loss = discriminator_loss([t[2:] for t in logits], [t[:2] for t in logits])
        opt.zero_grad()
        loss.backward()
        opt.step()
    fake, real = quiet_high_band(seconds=0.25, seed=1000, db=-40)
    with torch.no_grad():
        logits, _ = d(torch.cat([fake, real]))
    margin = mean_logit([t[2:] for t in logits]) - mean_logit([t[:2] for t in logits])
    assert margin > 0.25, margin  # the paper's complex input stays at 0.000 here (docs/training.md)


def test_period_discriminators_follow_hifigan_and_are_level_invariant():
    torch.manual_seed(0)
    config = DiscriminatorConfig(fft_sizes=(64,), hidden_channels=4, spectrum="log_magnitude", periods=(2, 3),
                                 period_channels=4)
    d = Discriminator(config).eval()
    assert len(d.discriminators) == 3  # STFT first (old checkpoints keep their keys), then one net per period
    period = d.discriminators[2]
    assert period.period == 3 and [layer[0].stride for layer in period.hidden] == [(3, 1)] * 4 + [(1, 1)]
    assert [layer[0].out_channels for layer in period.hidden] == [4, 16, 64, 128, 128]
    assert hasattr(period.hidden[0][0], "parametrizations")  # weight norm
    _, x = clips(batch=2, seconds=0.1)  # 4,410 samples: not a multiple of 3, padded
    logits, features = d(x)
    assert logits[2].shape[:2] == (2, 1) and logits[2].shape[-1] == 3 and len(features[2]) == 5
    for a, b in zip(logits, d(1e-3 * x)[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert all(torch.isfinite(t).all() for t in d(torch.zeros_like(x))[0])
    with pytest.raises(ValueError, match="fft_sizes or periods"):
        DiscriminatorConfig(fft_sizes=(), periods=())
    period_only = Discriminator(DiscriminatorConfig(fft_sizes=(), periods=(5,), period_channels=2))
    assert len(period_only(x)[0]) == 1


def test_losses_follow_equations():
    ones, zeros = [torch.ones(2, 1, 3, 4)] * 2, [torch.zeros(2, 1, 3, 4)] * 2
    assert discriminator_loss(ones, zeros) == 0 and discriminator_loss(zeros, ones) == 2
    assert adversarial_loss(ones) == 0 and adversarial_loss(zeros) == 1
    feats = [[torch.full((1, 2, 3, 3), 2.0)]]
    assert feature_matching_loss(feats, feats) == 0
    assert feature_matching_loss([[torch.full((1, 2, 3, 3), 3.0)]], feats).item() == pytest.approx(0.5)
    degraded, clean = clips()
    rec = SpectralReconstructionLoss((64, 256))
    assert rec(clean, clean).item() == 0
    assert rec(2 * clean, clean).item() == pytest.approx(1.0, rel=1e-4)  # | |2S| - |S| | / |S|
    assert 0 < rec(degraded, clean).item() < 1
    phase_aware = SpectralReconstructionLoss((64, 256), complex_weight=1.0)
    assert rec(-clean, clean).item() == 0  # magnitudes cannot see a phase flip ...
    assert phase_aware(-clean, clean).item() == pytest.approx(2.0, rel=1e-4)  # ... the complex term can


@pytest.mark.parametrize("periods", [(), (2, 3)])
def test_one_gan_step_updates_both_networks(periods):
    torch.manual_seed(0)
    config = tiny_experiment()
    config = dataclasses.replace(config, discriminator=dataclasses.replace(
        config.discriminator, periods=periods, period_channels=2))
    trainer = GANTrainer(config, init_distributed("cpu"))
    degraded, clean = clips(batch=2)
    g0, d0 = snapshot(trainer.generator), snapshot(trainer.discriminator)
    metrics = trainer.step(degraded, clean, adversarial=True)
    assert {"d_loss", "g_adv", "g_fm", "g_rec", "g_total", "g_grad_norm", "d_grad_norm", "d_margin"} <= set(metrics)
    assert metrics["d_margin"] == pytest.approx(metrics["d_real"] - metrics["d_fake"])
    assert metrics["g_total"] == pytest.approx(metrics["g_rec"] + metrics["g_fm"] + metrics["g_adv"], rel=1e-5)
    for before, module in ((g0, trainer.generator), (d0, trainer.discriminator)):
        changed = [k for k, v in module.named_parameters() if not torch.equal(v, before[k])]
        assert len(changed) == len(before), f"{len(before) - len(changed)} parameters did not move"
    d1 = snapshot(trainer.discriminator)
    trainer.step(degraded, clean, adversarial=False)  # warm-up step: reconstruction only
    assert all(torch.equal(v, d1[k]) for k, v in trainer.discriminator.named_parameters())
    assert trainer.d_opt.state_dict()["state"][0]["step"] == 1


def test_a_discriminator_only_step_leaves_the_generator_alone():
    trainer = GANTrainer(tiny_experiment(), init_distributed("cpu"))
    degraded, clean = clips(batch=2)
    g0, d0 = snapshot(trainer.generator), snapshot(trainer.discriminator)
    metrics = trainer.step(degraded, clean, adversarial=True, generator=False)
    assert set(metrics) == {"d_loss", "d_grad_norm", "d_real", "d_fake", "d_margin"}
    assert all(torch.equal(v, g0[k]) for k, v in trainer.generator.named_parameters())
    assert not trainer.g_opt.state_dict()["state"]  # the generator's optimizer never stepped
    assert all(not torch.equal(v, d0[k]) for k, v in trainer.discriminator.named_parameters())
    with pytest.raises(ValueError, match="trains the generator, the discriminator or both"):
        trainer.step(degraded, clean, adversarial=False, generator=False)


def test_tiny_model_overfits_a_few_clips():
    torch.manual_seed(0)
    trainer = GANTrainer(tiny_experiment(generator_lr=2e-2), init_distributed("cpu"))
    degraded, clean = clips(batch=2, seconds=0.25)
    first = trainer.step(degraded, clean, adversarial=False)["g_rec"]
    for _ in range(30):
        last = trainer.step(degraded, clean, adversarial=False)["g_rec"]
    assert last < 0.7 * first, (first, last)


def test_mixed_precision_options():
    config = tiny_experiment()
    config.train.precision = "bf16"  # autocast runs on CPU too; CUDA is where it pays
    trainer = GANTrainer(config, init_distributed("cpu"))
    degraded, clean = clips(seconds=0.25)
    metrics = trainer.step(degraded, clean, adversarial=True)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    config.train.precision = "fp16"
    with pytest.raises(ApolloError, match="fp16 needs a CUDA device"):
        GANTrainer(config, init_distributed("cpu"))


def test_cli_bench_times_real_steps(tmp_path, capsys):
    from apollo_restore.cli import main

    path = tmp_path / "tiny.yaml"
    path.write_text("model: {feature_dim: 16, num_layers: 1, num_heads: 2}\ndata: {clip_seconds: 0.25}\n"
                    "discriminator: {fft_sizes: [64, 256]}\nloss: {fft_sizes: [64, 256]}\ntrain: {device: cpu}\n")
    assert main(["train", str(path), "--bench", "1"]) == 0
    out = capsys.readouterr().out
    assert "16x1, batch 1 x 0.25 s stereo" in out
    rates = [float(line.split(": ")[1].split()[0]) for line in out.splitlines() if "steps/s" in line]
    assert len(rates) == 2 and all(rate > 0 for rate in rates)
    assert main(["train", str(path), "--bench", "0"]) == 2  # a usage error: --bench is at least 1


def test_log_magnitude_term_weighs_the_quiet_high_band():
    """A high band 20 dB too loud: small for eq. 4's linear L1, large for the log term; level-invariant."""
    _, clean = clips()
    spec = torch.fft.rfft(clean)
    high = torch.fft.rfftfreq(clean.shape[-1], 1 / SR) > 8000
    quiet = spec.clone()
    quiet[..., high] *= 0.01  # the reference: a high band 40 dB under the noise floor elsewhere
    loud = quiet.clone()
    loud[..., high] *= 10  # the estimate: the same high band 20 dB too loud
    reference, estimate = (torch.fft.irfft(s, n=clean.shape[-1]) for s in (quiet, loud))
    linear = SpectralReconstructionLoss((256, 1024))
    with_log = SpectralReconstructionLoss((256, 1024), log_weight=1.0)
    assert with_log(reference, reference).item() == pytest.approx(0.0, abs=1e-6)
    log_term = with_log(estimate, reference).item() - linear(estimate, reference).item()
    assert log_term > 5 * linear(estimate, reference).item()
    assert with_log(10 * estimate, 10 * reference).item() == pytest.approx(with_log(estimate, reference).item(),
                                                                            rel=1e-3)
    assert torch.isfinite(with_log(torch.zeros_like(clean), torch.zeros_like(clean)))


def test_init_from_starts_a_run_from_a_checkpoint_with_the_same_architecture(tmp_path):
    from apollo_restore.checkpoint import save_model
    from apollo_restore.model import Apollo

    experiment = tiny_experiment()
    torch.manual_seed(1)
    source = Apollo(experiment.model)
    save_model(source, tmp_path / "source")
    gated = GateConfig()  # a run may add a gate to a model trained without one
    experiment = dataclasses.replace(experiment, gate=gated,
                                     train=dataclasses.replace(experiment.train, init_from=str(tmp_path / "source")))
    trainer = GANTrainer(experiment, init_distributed("cpu"))
    for name, value in source.state_dict().items():
        assert torch.equal(trainer.generator.state_dict()[name], value), name
    wider = dataclasses.replace(experiment, model=dataclasses.replace(experiment.model, feature_dim=64, num_heads=4))
    with pytest.raises(ApolloError, match="init_from"):
        GANTrainer(wider, init_distributed("cpu"))


def test_kept_bins_term_holds_phase_where_the_codec_kept_the_signal_only():
    """degraded = clean low-passed at 4 kHz. An estimate with the clean phase below 4 kHz and the right magnitude
    but a random phase above costs nothing in the kept-bins term; flipping the phase below 4 kHz does."""
    degraded, clean = clips()
    spec = torch.fft.rfft(clean)
    freqs = torch.fft.rfftfreq(clean.shape[-1], 1 / SR)
    high = freqs > 4500
    phase = torch.exp(2j * torch.pi * torch.rand(spec.shape, generator=torch.Generator().manual_seed(1)))
    scrambled = torch.fft.irfft(torch.where(high, spec * phase, spec), n=clean.shape[-1])
    flipped = torch.fft.irfft(torch.where(high, spec, -spec), n=clean.shape[-1])
    kept = SpectralReconstructionLoss((256, 1024), kept_weight=1.0)
    plain = SpectralReconstructionLoss((256, 1024))
    extra = [kept(x, clean, degraded).item() - plain(x, clean).item() for x in (scrambled, flipped)]
    assert extra[0] < 0.05 * extra[1], extra
    assert kept(clean, clean, degraded).item() == 0
    with pytest.raises(ValueError, match="degraded"):
        kept(clean, clean)


def test_compiled_training_step_equals_eager():
    """``train.compile`` runs the generator's step through torch.compile: same losses and gradients as eager.

    The test compiles with the ``aot_eager`` backend (graph capture and the compiled backward, the kernels
    eager), because inductor's C++ build of the kernels takes ~4 min on a cold cache; inductor's own
    agreement on the 64x2 config is measured in docs/training.md."""
    degraded, clean = clips(seconds=0.25)
    results = []
    for backend in (None, "aot_eager"):
        config = tiny_experiment()
        config.train = dataclasses.replace(config.train, compile=backend)
        torch.manual_seed(0)
        trainer = GANTrainer(config, init_distributed("cpu"))
        metrics = trainer.step(degraded, clean, adversarial=False)
        grads = {name: p.grad.clone() for name, p in trainer.generator.named_parameters()}
        results.append((metrics, grads))
    (eager_metrics, eager_grads), (compiled_metrics, compiled_grads) = results
    assert eager_metrics.keys() == compiled_metrics.keys()
    for key, value in eager_metrics.items():
        assert compiled_metrics[key] == pytest.approx(value, rel=1e-4), key
    assert sum(float(g.abs().sum()) for g in eager_grads.values()) > 0
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-7)


def test_inference_gate_acts_at_validation_and_in_checkpoints_only(tmp_path):
    """A gate-free generator validated through a pass-band gate: the training step writes every bin, the
    validation restore keeps the codec's pass band, and `served_gate` (what checkpoints carry) is that gate."""
    from apollo_restore.gate import Gate

    served = GateConfig(keep_pass_band=True, level_cap=False)
    experiment = dataclasses.replace(tiny_experiment(), inference_gate=served)
    assert experiment.served_gate == served and tiny_experiment().served_gate is None
    assert dataclasses.replace(experiment, inference_gate=None, gate=served).served_gate == served
    trainer = GANTrainer(experiment, init_distributed("cpu"))
    assert trainer.gate is None and trainer.inference_gate.config == served
    degraded, _ = clips()
    with torch.no_grad():
        for p in trainer.generator.parameters():  # far from the identity, so the gate's effect shows
            p.add_(0.2 * torch.randn_like(p))
        ungated = trainer.generator.eval()(degraded)
        gated = trainer.generator(degraded, Gate(served, experiment.model).bind(channels=2))
    restored = trainer.restore(degraded)
    torch.testing.assert_close(restored, gated)
    assert (restored - ungated).abs().max() > 1e-3
    spectrum = (torch.fft.rfft(restored) - torch.fft.rfft(degraded)).abs()
    pass_band = torch.fft.rfftfreq(degraded.shape[-1], 1 / SR) < 3000
    other = (torch.fft.rfft(ungated) - torch.fft.rfft(degraded)).abs()
    assert spectrum[..., pass_band].mean() < 0.2 * other[..., pass_band].mean()  # the pass band comes through
