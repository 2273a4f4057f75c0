"""Real-time restoration with a causal Apollo: feed chunks of any size, get final samples back at once.

Why it is exact. The causal model frames the signal like ``torch.stft(center=True, pad_mode="constant")``:
frame ``t`` covers input samples ``[t*hop - pad, t*hop - pad + n_fft)`` (``pad = n_fft // 2``, zeros before
the start). Band split, band transformer and band merge act on one frame at a time, and the time convolutions
see only the past (their ``kernel - 1`` previous frames are carried as state), so a frame's restored spectrum
depends on that frame and earlier ones only. The stream computes every frame as soon as its last input sample
has arrived, overlap-adds the windowed inverse FFTs (dividing by the summed squared window, as ``torch.istft``
does) and returns an output sample once no later frame can touch it. At the end, ``flush`` zero-pads exactly
as the offline pass does. The concatenated output therefore equals ``model(audio)`` on the whole signal, up
to float rounding. A stream with a gate (`apollo_restore.gate`) is the one exception: it cannot see the whole
signal, so each frame uses the codec cut estimated from the frames so far (`gate.PassBandTracker`). It
equals the offline pass given those running estimates; once the estimate has settled (0.1 s on an MP3-like
test signal) it differs from the offline pass with the whole signal's estimate only at the edge of the cut band.

Latency. Output sample ``n`` is final once frame ``floor((n + pad) / hop)`` is computed, i.e. when input
sample ``floor((n + pad) / hop) * hop - pad + n_fft - 1`` has arrived: between ``n_fft - hop`` and
``n_fft - 1`` samples later. The algorithmic latency is ``n_fft - 1`` samples (881 samples = 19.98 ms at
44.1 kHz with 20 ms windows), one window; feeding chunks of ``c`` samples adds up to ``c - 1`` samples.

Level. The offline restorer scales each file to peak 1.0; a stream cannot know its peak in advance. The
stream multiplies its input by a fixed ``gain`` (default 1: full-scale music is assumed, as the model was
trained on peak-normalised clips) and divides the output by it, so the output is at the input's level.

State (``state_dict``): the conv histories, the input samples not yet framed, the overlap-add buffers and
counters; all tensors, so it can be saved with ``safetensors`` and a stream resumed elsewhere.
"""

from __future__ import annotations

import math
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from apollo_restore.errors import ApolloError
from apollo_restore.gate import Gate
from apollo_restore.inference import pick_device
from apollo_restore.model import Apollo
from apollo_restore.model.layers import spans
from apollo_restore.model.step import CausalStep
from apollo_restore.stft import OverlapAdd

#: keys of ``StreamingRestorer.state_dict`` besides the conv histories (``conv.<layer>.<block>``)
_STATE_KEYS = ("inbuf", "ola", "envelope", "counters")
#: most frames restored by one network call (a stream that is behind, a big chunk, the flush): batching pending
#: frames amortises the per-operation cost, and this bounds the memory of the widest intermediate
MAX_BATCH_FRAMES = 64


class StreamingRestorer:
    """Restores a stream chunk by chunk with a causal :class:`Apollo`; see the module docstring.

    ``process(chunk [channels, n]) -> [channels, m]`` returns the samples that became final (``m`` may be 0);
    ``flush() -> [channels, k]`` ends the stream and returns the rest, so the total equals the input length;
    the stream is then reset and can take a new one. The channel count is fixed by the first chunk.
    """

    def __init__(self, model: Apollo, device: str | torch.device | None = None, gain: float = 1.0,
                 compile: bool = False, gate: Gate | None = None, engine: str = "torch"):
        if not model.config.causal:
            raise ApolloError("streaming needs a causal model (config causal: true); this one looks ahead in time")
        if not (np.isfinite(gain) and gain > 0):
            raise ApolloError(f"stream gain must be a positive number, got {gain}")
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.gain = float(gain)
        self.gate = gate
        self.framing = self.config.framing
        self._step = self._make_step(engine, compile)
        # torch.compile specialises on shapes: compile the steady one-frame call only, run the rest eagerly
        self._one_frame = torch.compile(self._step.__call__, dynamic=False) if compile else self._step
        self.reset()

    def _make_step(self, engine: str, compiled: bool):
        """The network of one call: `CausalStep` (torch), or its ONNX export through onnxruntime (CPU)."""
        if engine == "torch":
            return CausalStep(self.model)
        if engine != "onnx":
            raise ApolloError(f"unknown stream engine {engine!r} (torch or onnx)")
        if compiled:
            raise ApolloError("--compile compiles the torch step; the onnx engine runs its own graph")
        if self.device.type != "cpu":
            raise ApolloError(f"the onnx stream engine runs on the CPU, not {self.device.type} (use --device cpu)")
        from apollo_restore.export import OnnxCausalStep

        return OnnxCausalStep(self.model)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: the longest wait from an input sample's arrival to its output (``n_fft - 1``)."""
        return self.framing.n_fft - 1

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    @property
    def frames_done(self) -> int:
        """STFT frames (one hop of samples each) computed since the stream started."""
        return self._next_frame

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new one (and may have another channel count)."""
        self.channels: int | None = None
        self._conv: list[list[Tensor]] | None = None
        self._inbuf = torch.zeros(0, 0, device=self.device)  # input from framing.frame_start(_next_frame) on
        self._out: OverlapAdd | None = None  # restored frames not yet final
        self._next_frame = 0
        self._received = 0
        self._peak = 0.0  # of the input so far, for the error message if the output stops being finite
        self._pass_band = None if self.gate is None else self.gate.tracker(self.device)

    def _start(self, channels: int) -> None:
        self.channels = channels
        self._inbuf = torch.zeros(channels, self.framing.pad, device=self.device)  # the zeros before sample 0
        self._out = OverlapAdd(self.framing, channels, self.device)

    def _check(self, chunk: np.ndarray | Tensor) -> tuple[Tensor, float]:
        """The chunk as float32 ``[channels, n]`` on the device, and its peak (one reduction checks finiteness)."""
        if isinstance(chunk, np.ndarray) and not chunk.flags.writeable:  # e.g. np.frombuffer over raw bytes
            chunk = chunk.copy()
        x = torch.as_tensor(chunk)
        if x.ndim != 2:
            raise ApolloError(f"stream chunks must be [channels, samples], got shape {tuple(x.shape)}")
        if self.channels is None:
            if x.shape[0] < 1:
                raise ApolloError("stream chunk has no channels")
            self._start(x.shape[0])
        elif x.shape[0] != self.channels:
            raise ApolloError(f"stream has {self.channels} channels but a chunk has {x.shape[0]}")
        peak = float(x.abs().amax()) if x.is_floating_point() and x.numel() else 0.0  # NaN and inf propagate
        if not (x.is_floating_point() and math.isfinite(peak)):
            raise ApolloError("stream chunks must hold finite float samples (no integers, NaN or infinity)")
        return x.to(self.device, torch.float32), peak

    @torch.inference_mode()
    def process(self, chunk: np.ndarray | Tensor) -> np.ndarray:
        """Feed ``chunk [channels, n]`` (float, any ``n >= 0``); return the newly final samples ``[channels, m]``."""
        x, peak = self._check(chunk)
        self._inbuf = torch.cat([self._inbuf, x if self.gain == 1 else x * self.gain], dim=1)
        self._received += x.shape[1]
        self._peak = max(self._peak, peak)
        f = self.framing
        if self._inbuf.shape[1] >= f.n_fft:  # every frame whose last input sample has arrived
            self._run_frames((self._inbuf.shape[1] - f.n_fft) // f.hop + 1)
        # samples before the next frame's first sample get no more overlap-add terms
        return self._emit(f.frame_start(self._next_frame))

    @torch.inference_mode()
    def flush(self) -> np.ndarray:
        """End the stream: return its remaining samples ``[channels, k]`` and reset for a new stream."""
        if self.channels is None:
            return np.zeros((0, 0), np.float32)
        # the frames of the offline pass: zeros appended up to the model's padded length, pad zeros after that
        f = self.framing
        frames = f.num_frames(f.padded_length(self._received))
        needed = f.frame_start(frames - 1) + f.n_fft  # input positions the last frame reads
        have = f.frame_start(self._next_frame) + self._inbuf.shape[1]
        self._inbuf = F.pad(self._inbuf, (0, max(0, needed - have)))
        if frames > self._next_frame:
            self._run_frames(frames - self._next_frame)
        tail = self._emit(self._received)
        self.reset()
        return tail

    def _emit(self, final: int) -> np.ndarray:
        """Return the output samples before ``final`` not yet returned, ``[channels, m]``."""
        at = self._out.emitted / self.sample_rate
        out = self._out.take(final)
        out = out if self.gain == 1 else out / self.gain
        if not torch.isfinite(out).all():  # never hand out NaN/inf: the stream cannot go on
            peak = self._peak
            self.reset()
            raise ApolloError(f"restored stream is not finite (NaN or infinity) after {at:.2f} s; input peak so far "
                              f"{peak:.3g} (full scale is 1.0: scale the input, e.g. --gain-db)")
        return out.cpu().numpy()

    def _run_frames(self, count: int) -> None:
        """Restore the next ``count`` frames of the input buffer and overlap-add them into the output."""
        spec = self.framing.analyse(self._inbuf, count)  # [channels, count, bins]
        parts = []
        for start, stop in spans(count, MAX_BATCH_FRAMES):
            step = self._one_frame if stop - start == 1 and self._conv is not None else self._step
            real, imag, self._conv = step(spec.real[:, start:stop], spec.imag[:, start:stop], self._conv)
            parts.append(torch.complex(real, imag))
        restored = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if self.gate is not None:
            restored = self.gate(spec, restored, self._pass_band.running(spec))  # causal: the frames so far
        self._out.add(restored, self._next_frame)
        self._next_frame += count
        self._inbuf = self._inbuf[:, count * self.framing.hop :]

    def state_dict(self) -> dict[str, Tensor]:
        """The stream's state as CPU tensors (conv histories ``conv.<layer>.<block>``, buffers, counters)."""
        if self.channels is None:
            return {}
        counters = [self.channels, self._next_frame, self._received, self._out.emitted]
        state = {
            "inbuf": self._inbuf, "ola": self._out.sums, "envelope": self._out.envelope,
            "counters": torch.tensor(counters, dtype=torch.int64),
        }
        for i, layer in enumerate(self._conv or []):
            for j, history in enumerate(layer):
                state[f"conv.{i}.{j}"] = history
        if self._pass_band is not None:
            state["pass_band"] = self._pass_band.state
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Continue the stream saved by :meth:`state_dict` (an empty dict is a fresh stream)."""
        self.reset()
        if not state:
            return
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ApolloError(f"stream state lacks {missing}")
        channels, self._next_frame, self._received, emitted = (int(v) for v in state["counters"])
        self._start(channels)
        self._inbuf, self._out.sums, self._out.envelope = (_owned(state[k], self.device) for k in _STATE_KEYS[:3])
        self._out.emitted = emitted
        c = self.config
        conv_keys = [[f"conv.{i}.{j}" for j in range(c.tcn_blocks)] for i in range(c.num_layers)]
        present = {k for k in state if k.startswith("conv.")}
        if present and present != {k for layer in conv_keys for k in layer}:
            self._mismatch()
        if present:
            self._conv = [[_owned(state[k], self.device) for k in layer] for layer in conv_keys]
        if self._pass_band is not None:
            try:
                self._pass_band.load(state["pass_band"])
            except (KeyError, ValueError):
                self._mismatch()
        self._validate()

    def _validate(self) -> None:
        c = self.config
        history = (self.channels, c.conv_kernel - 1, c.num_bands, c.feature_dim)
        conv_ok = self._conv is None or all(tuple(h.shape) == history for layer in self._conv for h in layer)
        buffers_ok = (
            self._inbuf.shape[0] == self._out.sums.shape[0] == self.channels
            and self._out.sums.shape[1] == self._out.envelope.shape[0]
            and self._inbuf.shape[1] == self._received - self.framing.frame_start(self._next_frame)
        )
        if not (conv_ok and buffers_ok):
            self._mismatch()

    def _mismatch(self) -> NoReturn:
        self.reset()
        raise ApolloError("stream state does not match this model (saved from another config?)")


def _owned(tensor: Tensor, device: torch.device) -> Tensor:
    """A float32 copy on ``device`` that the stream may modify without touching the caller's tensor."""
    return tensor.to(device, torch.float32, copy=True)
