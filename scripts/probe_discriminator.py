"""Can a discriminator tell a generator's output from the clean clip? Trains a discriminator alone.

The generator is frozen (a bundled name or a checkpoint; no gate, as in training); the discriminator of the
config (``--set discriminator.*`` to vary it) trains on (restored, clean) pairs of 3 s training clips with the
config's optimiser settings and LSGAN loss, and every 50 steps its margin D(clean) - D(restored) is measured on
held-out clips (and D(clean) - D(MP3) for reference). Used for docs/training.md, "Which discriminator learns":

    APOLLO_DATA=/path OMP_NUM_THREADS=1 python scripts/probe_discriminator.py --name current
    APOLLO_DATA=/path OMP_NUM_THREADS=1 python scripts/probe_discriminator.py --name mpd \\
        --set 'discriminator.fft_sizes=[]' --set 'discriminator.periods=[2,3,5,7,11]'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from apollo_restore.checkpoint import load_state
from apollo_restore.data import MixConfig, MixtureDataset
from apollo_restore.model import Apollo
from apollo_restore.train.config import load_config
from apollo_restore.train.discriminator import Discriminator
from apollo_restore.train.losses import discriminator_loss, mean_logit


def restored_pairs(data_config: MixConfig, generator: str, cache: Path) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """``{"train": 64, "held": 24}`` tuples (restored, clean, degraded), each ``[2, samples]``; cached."""
    if cache.exists():
        return torch.load(cache)
    model_config, state, _ = load_state(generator)
    model = Apollo(model_config)
    model.load_state_dict(state)
    model.eval()
    pairs = {}
    for split, seed, count in (("train", 11, 64), ("held", 12, 24)):
        data = MixtureDataset(data_config, split="train", epoch_size=count, seed=seed)
        items = []
        for index in range(count):
            item = data[index]
            with torch.no_grad():
                restored = model(item["degraded"][None])[0]
            items.append((restored, item["clean"], item["degraded"]))
        pairs[split] = items
    torch.save(pairs, cache)
    return pairs


def margin(logits: list[torch.Tensor]) -> float:
    """Batch ``[fake, real]``: mean D(real) - mean D(fake)."""
    return mean_logit([t[1:] for t in logits]) - mean_logit([t[:1] for t in logits])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--generator", default="default")
    parser.add_argument("--set", action="append", default=[], help="config override, as apollo train")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path("runs/probe-pairs.pt"))
    parser.add_argument("--name", default="probe")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = load_config(args.config, args.set)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    pairs = restored_pairs(config.data, args.generator, args.cache)
    disc = Discriminator(config.discriminator)
    opt = torch.optim.AdamW(disc.parameters(), config.optim.discriminator_lr, config.optim.discriminator_betas,
                            weight_decay=config.optim.weight_decay)

    @torch.no_grad()
    def held_out(use_mp3: bool) -> float:
        disc.eval()
        values = [margin(disc(torch.stack([degraded if use_mp3 else restored, clean]))[0])
                  for restored, clean, degraded in pairs["held"]]
        disc.train()
        return sum(values) / len(values)

    started, window = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        restored, clean, _ = pairs["train"][(step - 1) % len(pairs["train"])]
        logits, _ = disc(torch.stack([restored, clean]))
        loss = discriminator_loss([t[1:] for t in logits], [t[:1] for t in logits])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(disc.parameters(), config.optim.grad_clip)
        opt.step()
        window.append(margin(logits))
        if step % 50 == 0:
            record = {"name": args.name, "step": step, "train_margin": sum(window) / len(window),
                      "held_margin": held_out(False), "held_margin_mp3": held_out(True),
                      "s_per_step": (time.perf_counter() - started) / step, "parameters": disc.num_parameters()}
            window = []
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
