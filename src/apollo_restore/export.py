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

A causal model exports its streaming step instead (`model.step.CausalStep`, docs/streaming.md): the frames of
one call and the conv state in, the restored frames and the new state out. Inputs ``real``, ``imag``
``[channels, frames, bins]`` and ``state`` ``[layers * tcn_blocks, channels, kernel - 1, bands, dim]`` (zeros at
the start of a stream); outputs ``restored_real``, ``restored_imag`` and ``new_state`` (same shapes), channels
and frames dynamic. A host feeds each output state back with the next frames (``state_shape`` in the metadata).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from apollo_restore.errors import ApolloError
from apollo_restore.model import Apollo, ApolloConfig
from apollo_restore.model.apollo import ConvState
from apollo_restore.model.step import CausalStep

INPUTS = ("real", "imag")
OUTPUTS = ("restored_real", "restored_imag")
#: the causal step's state input and output (after the spectra)
STATE_INPUT, STATE_OUTPUT = "state", "new_state"
OPSET = 18


class _Network(nn.Module):
    def __init__(self, model: Apollo):
        super().__init__()
        self.model = model

    def forward(self, real: Tensor, imag: Tensor) -> tuple[Tensor, Tensor]:
        out_real, out_imag, _ = self.model.network(real, imag)
        return out_real, out_imag


class _CausalNetwork(nn.Module):
    """`CausalStep` with its conv state as one tensor ``[layers * tcn_blocks, channels, kernel - 1, bands, dim]``."""

    def __init__(self, model: Apollo):
        super().__init__()
        self.step = CausalStep(model)
        self.blocks = model.config.tcn_blocks

    def forward(self, real: Tensor, imag: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        histories = state.unbind(0)
        nested = [list(histories[i : i + self.blocks]) for i in range(0, len(histories), self.blocks)]
        out_real, out_imag, new_state = self.step(real, imag, nested)
        return out_real, out_imag, torch.stack([history for layer in new_state for history in layer])


def state_shape(config: ApolloConfig, channels: int) -> tuple[int, ...]:
    """Shape of the exported causal step's ``state`` for ``channels`` channels."""
    return (config.num_layers * config.tcn_blocks, channels, config.conv_kernel - 1, config.num_bands,
            config.feature_dim)


def _onnx():
    """The onnx and onnxruntime modules (an ImportError names the ``onnx`` extra in the CLI)."""
    import onnx
    import onnxruntime

    return onnx, onnxruntime


def export_onnx(model: Apollo, path: str | os.PathLike) -> Path:
    """Write ``model``'s network (a causal model: its streaming step) to ``path``; see the module docstring."""
    from apollo_restore.files import atomic_write

    data = onnx_bytes(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def onnx_bytes(model: Apollo) -> bytes:
    """The serialised ONNX model that `export_onnx` writes."""
    onnx, _ = _onnx()
    import io

    config = model.config
    model = model.float().cpu().eval()
    frames = 2 * sum(config.context_frames) + 3  # any length works; the example's is not baked in
    example = torch.randn(2, frames, config.num_bins)
    meta = {"apollo_config": json.dumps(config.to_dict()), "context_frames": json.dumps(list(config.context_frames))}
    if config.causal:
        module, args = _CausalNetwork(model), (example, example.clone(), torch.randn(state_shape(config, 2)))
        inputs, outputs = [*INPUTS, STATE_INPUT], [*OUTPUTS, STATE_OUTPUT]
        dynamic = {name: {0: "channels", 1: "frames"} for name in (*INPUTS, *OUTPUTS)}
        dynamic.update({name: {1: "channels"} for name in (STATE_INPUT, STATE_OUTPUT)})
        meta["state_shape"] = json.dumps(["layers * tcn_blocks", "channels", *state_shape(config, 1)[2:]])
    else:
        module, args, inputs, outputs = _Network(model), (example, example.clone()), [*INPUTS], [*OUTPUTS]
        dynamic = {name: {0: "batch", 1: "frames"} for name in (*INPUTS, *OUTPUTS)}
    buffer = io.BytesIO()
    with torch.no_grad(), _one_pass(model):
        torch.onnx.export(module, args, buffer, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


@contextlib.contextmanager
def _one_pass(model: Apollo) -> Iterator[None]:
    """Inference over all frames in one chunk while tracing: the frame-chunk loops count their chunks from the
    example's length, which a graph of dynamic length cannot carry (at 256x6 it divided by zero)."""
    chunked = [m for m in model.modules() if hasattr(m, "chunk")]
    saved = [m.chunk for m in chunked]
    for m in chunked:
        m.chunk = sys.maxsize
    try:
        yield
    finally:
        for m, chunk in zip(chunked, saved, strict=True):
            m.chunk = chunk


def onnx_config(path: str | os.PathLike) -> ApolloConfig:
    """The model config stored in an exported file's metadata."""
    onnx, _ = _onnx()
    try:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return ApolloConfig.from_dict(json.loads(meta["apollo_config"]))
    except (KeyError, ValueError, OSError) as error:
        raise ApolloError(f"{path}: not an ONNX file written by apollo export ({error})") from None


def _session(model: bytes | str | os.PathLike, threads: int | None):
    _, ort = _onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _numpy(tensor: Tensor):
    return tensor.detach().float().cpu().contiguous().numpy()


class OnnxApollo(Apollo):
    """An `Apollo` whose network runs through onnxruntime (CPU); STFT, inverse STFT and ``post`` stay in torch.

    Offline use: ``network`` takes no causal state (a causal model's step graph runs from zeros).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        nn.Module.__init__(self)
        self.config = onnx_config(path)
        self.gradient_checkpointing = False
        self.session = _session(path, threads)

    def network(self, real: Tensor, imag: Tensor, state=None) -> tuple[Tensor, Tensor, list]:
        if state is not None:
            raise ApolloError("the ONNX engine restores files offline (stream with apollo stream --engine onnx)")
        feeds = {name: _numpy(part) for name, part in zip(INPUTS, (real, imag), strict=True)}
        if self.config.causal:
            feeds[STATE_INPUT] = torch.zeros(state_shape(self.config, real.shape[0])).numpy()
        out_real, out_imag = self.session.run(list(OUTPUTS), feeds)
        return torch.from_numpy(out_real).to(real.device), torch.from_numpy(out_imag).to(real.device), []

    def with_precision(self, dtype: torch.dtype) -> Apollo:
        raise ApolloError("the ONNX engine runs the exported float32 graph (use --precision fp32)")


class OnnxCausalStep:
    """`CausalStep` through onnxruntime (CPU): ``step(real, imag, state) -> (real, imag, state)``, the same
    interface and state (``state[layer][block] [channels, kernel - 1, bands, dim]``, None at the start).

    The graph takes the state as one tensor; the nested state it returns is views of that output, and fed back
    unchanged it goes in without a copy.
    """

    def __init__(self, model: Apollo, threads: int | None = None):
        if not model.config.causal:
            raise ApolloError("the streaming step needs a causal model (config causal: true)")
        self.config = model.config
        self.session = _session(onnx_bytes(model), threads)
        self._returned: tuple[list[ConvState], object] | None = None  # (nested state, the graph's state array)

    def __call__(self, real: Tensor, imag: Tensor, state: list[ConvState] | None = None
                 ) -> tuple[Tensor, Tensor, list[ConvState]]:
        c = self.config
        if state is None:
            packed = torch.zeros(state_shape(c, real.shape[0])).numpy()
        elif self._returned is not None and state is self._returned[0]:
            packed = self._returned[1]
        else:
            packed = torch.stack([history for layer in state for history in layer]).float().cpu().numpy()
        feeds = {INPUTS[0]: _numpy(real), INPUTS[1]: _numpy(imag), STATE_INPUT: packed}
        out_real, out_imag, new = self.session.run([*OUTPUTS, STATE_OUTPUT], feeds)
        histories = torch.from_numpy(new).to(real.device).unbind(0)
        nested = [list(histories[i : i + c.tcn_blocks]) for i in range(0, len(histories), c.tcn_blocks)]
        self._returned = (nested, new)
        return torch.from_numpy(out_real).to(real.device), torch.from_numpy(out_imag).to(real.device), nested
