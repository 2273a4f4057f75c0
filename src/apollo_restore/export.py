"""ONNX export of the generator's network and an onnxruntime engine that restores with it.

What is exported: `Apollo.network`, i.e. the spectrum in, the restored spectrum out, as float32 real and imaginary
parts ``[batch, frames, bins]`` (``real``, ``imag`` -> ``restored_real``, ``restored_imag``), batch and frames
dynamic. The STFT and inverse STFT stay outside: ONNX has an STFT operator but no inverse, and both are a few
lines with any FFT (periodic Hann window of ``n_fft`` samples, hop ``n_fft / 2``, centred frames with reflect
padding, no normalisation; the inverse divides by the summed squared window), cost nothing next to the network,
and a host that streams already frames its input itself. Writing them as fixed convolutions would put an
O(n_fft^2) DFT per frame into the graph and keep the spectrum (where a gate or any other rule acts) out of reach.

The file's metadata holds the model config (``apollo_config``, JSON) and the block plan (``context_frames``: the
real input frames each output frame needs before and after it), so one ``.onnx`` file is enough to restore.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from apollo_restore.errors import ApolloError
from apollo_restore.model import Apollo, ApolloConfig

INPUTS = ("real", "imag")
OUTPUTS = ("restored_real", "restored_imag")
OPSET = 18


class _Network(nn.Module):
    def __init__(self, model: Apollo):
        super().__init__()
        self.model = model

    def forward(self, real: Tensor, imag: Tensor) -> tuple[Tensor, Tensor]:
        out_real, out_imag, _ = self.model.network(real, imag)
        return out_real, out_imag


def _onnx():
    """The onnx and onnxruntime modules (an ImportError names the ``onnx`` extra in the CLI)."""
    import onnx
    import onnxruntime

    return onnx, onnxruntime


def export_onnx(model: Apollo, path: str | os.PathLike) -> Path:
    """Write ``model``'s network to ``path`` (see module docstring); returns the path."""
    onnx, _ = _onnx()
    from apollo_restore.files import atomic_write

    config = model.config
    if config.causal:
        raise ApolloError("ONNX export covers offline models; a causal model streams with its conv state "
                          "(apollo stream), which the exported graph does not carry")
    model = model.float().cpu().eval()
    frames = 2 * sum(config.context_frames) + 3  # any length works; the example's is not baked in
    example = torch.randn(1, frames, config.num_bins)
    dynamic = {name: {0: "batch", 1: "frames"} for name in (*INPUTS, *OUTPUTS)}
    import io

    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(_Network(model), (example, example.clone()), buffer, input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {"apollo_config": json.dumps(config.to_dict()), "context_frames": json.dumps(list(config.context_frames))}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = proto.SerializeToString()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def onnx_config(path: str | os.PathLike) -> ApolloConfig:
    """The model config stored in an exported file's metadata."""
    onnx, _ = _onnx()
    try:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return ApolloConfig.from_dict(json.loads(meta["apollo_config"]))
    except (KeyError, ValueError, OSError) as error:
        raise ApolloError(f"{path}: not an ONNX file written by apollo export ({error})") from None


class OnnxApollo(Apollo):
    """An `Apollo` whose network runs through onnxruntime (CPU); STFT, inverse STFT and ``post`` stay in torch.

    Only offline use: ``spectral_forward`` takes no causal state.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        nn.Module.__init__(self)
        _, ort = _onnx()
        self.config = onnx_config(path)
        self.gradient_checkpointing = False
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def network(self, real: Tensor, imag: Tensor, state=None) -> tuple[Tensor, Tensor, list]:
        if state is not None:
            raise ApolloError("the ONNX engine runs offline only (no causal state)")
        feeds = {name: part.detach().float().cpu().contiguous().numpy() for name, part in zip(INPUTS, (real, imag),
                                                                                           strict=True)}
        out_real, out_imag = self.session.run(list(OUTPUTS), feeds)
        return torch.from_numpy(out_real).to(real.device), torch.from_numpy(out_imag).to(real.device), []

    def with_precision(self, dtype: torch.dtype) -> Apollo:
        raise ApolloError("the ONNX engine runs the exported float32 graph (use --precision fp32)")
