"""Mapping between the reference release's state-dict layout and ours (facts only, no reference code).

Reference keys: ``BN.<band>.{0,1}`` (norm, bottleneck conv), ``net.<layer>.band_net.*`` (transformer),
``net.<layer>.seq_net.blocks.<j>.conv.{0,1,2,4}`` (temporal block), ``output.<band>.{0,1}`` (head).
Per-band tensors are stacked into our per-run tensors; 1x1 conv kernels lose their trailing axis.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from apollo_restore.errors import ApolloError
from apollo_restore.model.bands import band_runs
from apollo_restore.model.config import ApolloConfig

#: rates the reference's 20 ms window maps to an STFT size; used to tell 882 from 883 when reading a state dict
_COMMON_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)

_TRANSFORMER = {
    "input_norm.weight": "attn_norm.weight",
    "weight.weight": "qkv.weight",
    "output.weight": "attn_out.weight",
    "MLP.0.weight": "ffn_norm.weight",
    "MLP.1.weight": "ffn_in.weight",
    "MLP_output.weight": "ffn_out.weight",
}
_TEMPORAL = {
    "conv.0.weight": "dwconv.weight",
    "conv.0.bias": "dwconv.bias",
    "conv.1.weight": "norm.weight",
    "conv.2.weight": "fc1.weight",
    "conv.2.bias": "fc1.bias",
    "conv.4.weight": "fc2.weight",
    "conv.4.bias": "fc2.bias",
}


def is_reference_state_dict(state: dict[str, Tensor]) -> bool:
    return "BN.0.1.weight" in state and "output.0.1.weight" in state


def _count(state: dict[str, Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    if found != set(range(len(found))):
        raise ApolloError(f"state dict has gaps in {pattern!r} indices: {sorted(found)}")
    return len(found)


def infer_config(state: dict[str, Tensor], sample_rate: int | None = None) -> ApolloConfig:
    """Read feature_dim, layers, heads, band widths (and so the sample rate) off a reference state dict."""
    bands = _count(state, r"BN\.(\d+)\.0\.weight")
    widths = tuple((state[f"BN.{k}.0.weight"].shape[0] - 1) // 2 for k in range(bands))
    dim = state["BN.0.1.weight"].shape[0]
    layers = _count(state, r"net\.(\d+)\.band_net\.input_norm\.weight")
    rope = state.get("net.0.band_net.cos_freq")
    heads = dim // rope.shape[1] if rope is not None else 8
    kernel = state["net.0.seq_net.blocks.0.conv.0.weight"].shape[-1]
    tcn_blocks = _count(state, r"net\.0\.seq_net\.blocks\.(\d+)\.conv\.0\.weight")
    if sample_rate is None:
        bins = sum(widths)
        candidates = [n_fft * 50 for n_fft in (2 * (bins - 1), 2 * (bins - 1) + 1)]
        sample_rate = next((sr for sr in candidates if sr in _COMMON_RATES), candidates[0])
    return ApolloConfig(
        sample_rate=sample_rate, feature_dim=dim, num_layers=layers, num_heads=heads, num_bands=bands,
        band_widths=widths, conv_kernel=kernel, tcn_blocks=tcn_blocks,
    )


def reference_to_native(state: dict[str, Tensor], config: ApolloConfig) -> dict[str, Tensor]:
    """Convert a reference generator state dict to our layout for ``config`` (strict: every key is used)."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in state:
            raise ApolloError(f"reference checkpoint is missing {key!r}")
        used.add(key)
        return state[key]

    for r, run in enumerate(band_runs(config.widths)):
        ks = range(run.first_band, run.first_band + run.bands)
        out[f"split.norms.{r}.weight"] = torch.stack([take(f"BN.{k}.0.weight") for k in ks])
        out[f"split.projections.{r}.weight"] = torch.stack([take(f"BN.{k}.1.weight")[..., 0] for k in ks])
        out[f"split.projections.{r}.bias"] = torch.stack([take(f"BN.{k}.1.bias") for k in ks])
        out[f"merge.norms.{r}.weight"] = torch.stack([take(f"output.{k}.0.weight") for k in ks])
        out[f"merge.projections.{r}.weight"] = torch.stack([take(f"output.{k}.1.weight")[..., 0] for k in ks])
        out[f"merge.projections.{r}.bias"] = torch.stack([take(f"output.{k}.1.bias") for k in ks])
    for i in range(config.num_layers):
        for theirs, ours in _TRANSFORMER.items():
            tensor = take(f"net.{i}.band_net.{theirs}")
            out[f"blocks.{i}.band.{ours}"] = tensor[..., 0] if tensor.ndim == 3 else tensor
        for name in ("cos_freq", "sin_freq"):  # recomputed by our model; read only so they count as used
            used.add(f"net.{i}.band_net.{name}")
        for j in range(config.tcn_blocks):
            for theirs, ours in _TEMPORAL.items():
                tensor = take(f"net.{i}.seq_net.blocks.{j}.{theirs}")
                squeeze = tensor.ndim == 3 and ours.startswith("fc")
                out[f"blocks.{i}.time.{j}.{ours}"] = tensor[..., 0] if squeeze else tensor
    unused = sorted(set(state) - used)
    if unused:
        raise ApolloError(f"reference checkpoint has keys this model does not know: {unused[:5]}")
    return {k: v.float().contiguous() for k, v in out.items()}
