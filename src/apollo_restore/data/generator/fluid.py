"""In-process FluidSynth rendering of one part at a time to float32 stereo.

pyfluidsynth drives the synth; rendering goes through ``fluid_synth_write_float`` with explicit ctypes
argument types (without them ctypes passes pointers as 32-bit ints and the library crashes). The SoundFont
is loaded once per renderer, which is what makes in-process rendering ~700x real time per core.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from apollo_restore.errors import ApolloError
from apollo_restore.extras import missing_extra

BLOCK = 4096
#: 7th-order interpolation: FluidSynth's best (the default 4th order aliases on high notes)
INTERP_7TH = 7
RELEASE_SECONDS = 2.5


def load_library():
    try:
        import fluidsynth
    except ImportError as error:  # the Python package, or the C library it loads (scripts/install-data-deps.sh)
        raise ApolloError(missing_extra(error) or f"FluidSynth is not available ({error}); run "
                          "scripts/install-data-deps.sh") from None
    lib = fluidsynth._fl
    lib.fluid_synth_write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                            ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.fluid_synth_write_float.restype = ctypes.c_int
    lib.fluid_synth_set_interp_method.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.fluid_synth_all_sounds_off.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return fluidsynth, lib


class FluidRenderer:
    """One synth with one SoundFont loaded; renders note lists on channel 0 (never the GM drum channel)."""

    def __init__(self, soundfont: str | Path, sample_rate: int = 44100):
        fluidsynth, self._lib = load_library()
        if not Path(soundfont).is_file():
            raise ApolloError(f"{soundfont}: SoundFont not found (run scripts/install-data-deps.sh)")
        self.sample_rate = sample_rate
        self.synth = fluidsynth.Synth(gain=0.5, samplerate=float(sample_rate))
        for key, value in (("synth.reverb.active", 0), ("synth.chorus.active", 0), ("synth.polyphony", 512)):
            self.synth.setting(key, value)
        self.sfid = self.synth.sfload(str(soundfont))
        if self.sfid < 0:
            raise ApolloError(f"{soundfont}: FluidSynth cannot load this SoundFont")
        self._left = np.zeros(BLOCK, np.float32)
        self._right = np.zeros(BLOCK, np.float32)

    def has_preset(self, program: int, bank: int = 0) -> bool:
        """Whether the SoundFont holds GM ``program`` in ``bank``."""
        return self.synth.program_select(0, self.sfid, bank, program) == 0

    def _write(self, length: int, out: np.ndarray, at: int) -> None:
        """Render ``length`` samples into ``out[:, at:]`` (``out`` is ``[2, n]``)."""
        done = 0
        while done < length:
            n = min(BLOCK, length - done)
            self._lib.fluid_synth_write_float(self.synth.synth, n, self._left.ctypes.data, 0, 1,
                                              self._right.ctypes.data, 0, 1)
            out[0, at + done:at + done + n] = self._left[:n]
            out[1, at + done:at + done + n] = self._right[:n]
            done += n

    def render(self, program: int, notes: np.ndarray, seconds: float, bank: int = 0) -> np.ndarray:
        """Play ``notes`` ``[n, 4]`` (start s, duration s, MIDI pitch, velocity 1-127) with GM ``program``;
        returns float32 ``[2, round(seconds * sample_rate)]`` (notes past the end are cut)."""
        length = round(seconds * self.sample_rate)
        out = np.zeros((2, length + round(RELEASE_SECONDS * self.sample_rate)), np.float32)
        self.synth.system_reset()
        self._lib.fluid_synth_set_interp_method(self.synth.synth, -1, INTERP_7TH)  # reset clears it
        if not self.has_preset(program, bank) and not self.has_preset(program, 0):
            raise ApolloError(f"SoundFont has no preset for GM program {program}")
        starts = np.round(notes[:, 0] * self.sample_rate).astype(np.int64)
        ends = np.maximum(starts + 1, np.round((notes[:, 0] + notes[:, 1]) * self.sample_rate).astype(np.int64))
        times = np.concatenate([starts, ends])
        kinds = np.concatenate([np.ones(len(notes), np.int64), np.zeros(len(notes), np.int64)])  # offs first
        pitches = np.concatenate([notes[:, 2], notes[:, 2]]).astype(np.int64)
        velocities = np.concatenate([notes[:, 3], notes[:, 3]]).astype(np.int64)
        order = np.lexsort((kinds, times))
        now = 0
        for k in order:
            at = int(min(times[k], length))
            if at > now:
                self._write(at - now, out, now)
                now = at
            if kinds[k]:
                if times[k] < length:
                    self.synth.noteon(0, int(pitches[k]), int(np.clip(velocities[k], 1, 127)))
            else:
                self.synth.noteoff(0, int(pitches[k]))
        self._write(out.shape[1] - now, out, now)
        self._lib.fluid_synth_all_sounds_off(self.synth.synth, 0)
        return out[:, :length]

    def render_kit(self, notes: np.ndarray, seconds: float) -> np.ndarray:
        """Play ``notes`` ``[n, 4]`` (GM drum-map keys) on a drum-kit SoundFont whose kit is its first preset
        (bank 0, program 0; the AVL kits) -> float32 ``[2, samples]``; notes ring to the end."""
        length = round(seconds * self.sample_rate)
        out = np.zeros((2, length), np.float32)
        self.synth.system_reset()
        self._lib.fluid_synth_set_interp_method(self.synth.synth, -1, INTERP_7TH)
        if self.synth.program_select(0, self.sfid, 0, 0) != 0:
            raise ApolloError("drum-kit SoundFont has no preset at bank 0, program 0")
        now = 0
        for onset, _, pitch, velocity in notes[np.argsort(notes[:, 0])]:
            at = min(round(onset * self.sample_rate), length)
            if at > now:
                self._write(at - now, out, now)
                now = at
            self.synth.noteon(0, int(pitch), int(np.clip(velocity, 1, 127)))
        self._write(length - now, out, now)
        self._lib.fluid_synth_all_sounds_off(self.synth.synth, 0)
        return out

    def close(self) -> None:
        self.synth.delete()
