"""How much of what a model writes above the codec cut-off is the same in every frame (a stationary comb).

    python scripts/static_share.py default /work/runs/gan-snap/default-gan-step400 [--input clip.mp3]

Per model: the energy of the correction (restored minus input spectrum, above the gate's cut-off) in dB, and
its static share ``sum_k |mean_t C[t, k]|^2 / sum_k mean_t |C[t, k]|^2``: 1 when every frame gets the same
complex values (heard as steady tones 100 Hz apart, since hop = n_fft / 2 keeps only every other bin's steady
part), near 0 for content that follows the music. Default input: the bundled demo clip.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from apollo_restore.audio import read_audio
from apollo_restore.checkpoint import load_model
from apollo_restore.cli.restore import demo_clip
from apollo_restore.model.gate import estimate_cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="bundled names or checkpoint folders (gated models)")
    parser.add_argument("--input", default=str(demo_clip()), help="audio file (default: the demo clip)")
    args = parser.parse_args()
    audio, _ = read_audio(args.input)
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    x = x / x.abs().max().clamp_min(1e-12)
    for name in args.models:
        model = load_model(name, device="cpu")
        with torch.no_grad():
            spec = model.stft(x)
            cut, weight = estimate_cut(spec.reshape(1, -1, spec.shape[-1]), model.config.fill_below_db)
            out, _ = model.spectral_forward(spec, cut=(cut.expand(x.shape[0]), weight.expand(x.shape[0])))
        correction = (out - spec)[..., int(cut) + 2:]
        energy = correction.abs().square().mean(dim=1)
        static = correction.mean(dim=1).abs().square().sum() / energy.sum().clamp_min(1e-30)
        print(f"{name}: cut-off {int(cut) * model.config.sample_rate / model.config.n_fft / 1000:.2f} kHz, "
              f"weight {float(weight):.2f}, correction {10 * np.log10(float(energy.mean()) + 1e-30):.1f} dB, "
              f"static share {float(static):.2f}")


if __name__ == "__main__":
    main()
