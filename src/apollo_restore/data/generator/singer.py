"""Sung vocals by formant synthesis, with breath and sibilance: a stand-in for singing (no corpus can be had).

Source-filter: a PolyBLEP glottal pulse train (band-limited only at Nyquist) with vibrato, jitter and a
spectral tilt, plus pulse-synchronous aspiration noise, through five parallel formant resonators whose
centre frequencies glide between the vowels of the syllables (voice-type formant tables: soprano, alto,
tenor, bass). Syllables start with consonants drawn per note: sibilants /s/ and /sh/ and /f/ are
band-passed noise reaching 10-16 kHz, /t/ /k/ are short bursts, /h/ is aspiration. Phrases (at rests of
0.4 s or more) begin with an audible breath intake. Formant values are the standard published tables of
sung vowels (as in the Csound manual's formant appendix).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal

from apollo_restore.data.generator.voices import SAMPLE_RATE, njit, saw

#: voice -> vowel -> ((F1..F5 Hz), (amplitudes dB), (bandwidths Hz))
FORMANTS = {
    "soprano": {
        "a": ((800, 1150, 2900, 3900, 4950), (0, -6, -32, -20, -50), (80, 90, 120, 130, 140)),
        "e": ((350, 2000, 2800, 3600, 4950), (0, -20, -15, -40, -56), (60, 100, 120, 150, 200)),
        "i": ((270, 2140, 2950, 3900, 4950), (0, -12, -26, -26, -44), (60, 90, 100, 120, 120)),
        "o": ((450, 800, 2830, 3800, 4950), (0, -11, -22, -22, -50), (70, 80, 100, 130, 135)),
        "u": ((325, 700, 2700, 3800, 4950), (0, -16, -35, -40, -60), (50, 60, 170, 180, 200)),
    },
    "alto": {
        "a": ((800, 1150, 2800, 3500, 4950), (0, -4, -20, -36, -60), (80, 90, 120, 130, 140)),
        "e": ((400, 1600, 2700, 3300, 4950), (0, -24, -30, -35, -60), (60, 80, 120, 150, 200)),
        "i": ((350, 1700, 2700, 3700, 4950), (0, -20, -30, -36, -60), (50, 100, 120, 150, 200)),
        "o": ((450, 800, 2830, 3500, 4950), (0, -9, -16, -28, -55), (70, 80, 100, 130, 135)),
        "u": ((325, 700, 2530, 3500, 4950), (0, -12, -30, -40, -64), (50, 60, 170, 180, 200)),
    },
    "tenor": {
        "a": ((650, 1080, 2650, 2900, 3250), (0, -6, -7, -8, -22), (80, 90, 120, 130, 140)),
        "e": ((400, 1700, 2600, 3200, 3580), (0, -14, -12, -14, -20), (70, 80, 100, 120, 120)),
        "i": ((290, 1870, 2800, 3250, 3540), (0, -15, -18, -20, -30), (40, 90, 100, 120, 120)),
        "o": ((400, 800, 2600, 2800, 3000), (0, -10, -12, -12, -26), (40, 80, 100, 120, 120)),
        "u": ((350, 600, 2700, 2900, 3300), (0, -20, -17, -14, -26), (40, 60, 100, 120, 120)),
    },
    "bass": {
        "a": ((600, 1040, 2250, 2450, 2750), (0, -7, -9, -9, -20), (60, 70, 110, 120, 130)),
        "e": ((400, 1620, 2400, 2800, 3100), (0, -12, -9, -12, -18), (40, 80, 100, 120, 120)),
        "i": ((250, 1750, 2600, 3050, 3340), (0, -30, -16, -22, -28), (60, 90, 100, 120, 120)),
        "o": ((400, 750, 2400, 2600, 2900), (0, -11, -21, -20, -40), (40, 80, 100, 120, 120)),
        "u": ((350, 600, 2400, 2675, 2950), (0, -20, -32, -28, -36), (40, 80, 100, 120, 120)),
    },
}
VOWELS = ("a", "e", "i", "o", "u")
#: onset consonant -> (chance, duration s); "" is a vowel onset
CONSONANTS = {"": (0.5, 0.0), "s": (0.1, 0.11), "sh": (0.04, 0.12), "f": (0.04, 0.09), "t": (0.09, 0.035),
              "k": (0.06, 0.04), "h": (0.05, 0.08), "m": (0.06, 0.06), "l": (0.06, 0.05)}
#: noise band of each fricative / burst: (low Hz, high Hz, level re the vowel in dB)
NOISE_BANDS = {"s": (4500, 15500, -4.0), "sh": (2200, 7500, -6.0), "f": (1500, 16000, -16.0),
               "t": (3000, 14000, -6.0), "k": (1500, 5000, -8.0), "h": (800, 9000, -18.0)}
HIGH_TAIL = signal.butter(2, 4500, "highpass", fs=SAMPLE_RATE, output="sos")
BLOCK = 256  # formant coefficients are updated every 5.8 ms


@dataclass(frozen=True)
class SingerPatch:
    """One singer (stored in the song's metadata)."""

    voice: str
    vibrato_hz: float
    vibrato_cents: float
    jitter: float
    breathiness: float  # aspiration noise re the voiced source
    tilt_hz: float  # one-pole low-pass of the glottal source (lower = darker)
    air_db: float  # level of the high-passed breath layer re the voice
    coda_s: float  # chance of a closing /s/ or /t/
    tail_db: float  # level of the source's harmonics above the fifth formant

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def voice_for(median_pitch: float) -> str:
    return "soprano" if median_pitch >= 67 else "alto" if median_pitch >= 58 else "tenor" if median_pitch >= 50 \
        else "bass"


def draw_singer(median_pitch: float, rng: np.random.Generator) -> SingerPatch:
    return SingerPatch(voice_for(median_pitch), float(rng.uniform(4.8, 6.5)), float(rng.uniform(15, 60)),
                       float(rng.uniform(0.001, 0.005)), float(rng.uniform(0.04, 0.25)),
                       float(rng.uniform(2500, 9000)), float(rng.uniform(-42, -28)), float(rng.uniform(0.05, 0.2)),
                       float(rng.uniform(-34, -20)))


def _band_noise(n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    sos = signal.butter(4, [low, min(high, SAMPLE_RATE * 0.48)], "bandpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _formant_track(syllables: list[tuple[int, str]], length: int, voice: str) -> np.ndarray:
    """Per BLOCK: (5 frequencies, 5 linear gains, 5 bandwidths) ``[blocks, 3, 5]``, gliding 40 ms into
    each syllable's vowel."""
    blocks = length // BLOCK + 1
    table = np.array([FORMANTS[voice][v] for v in VOWELS], np.float64)  # [vowel, 3, 5]
    track = np.repeat(table[:1], blocks, axis=0)
    glide = max(1, round(0.04 * SAMPLE_RATE / BLOCK))
    previous = table[0]
    for k, (start, vowel) in enumerate(syllables):
        first = start // BLOCK
        last = syllables[k + 1][0] // BLOCK if k + 1 < len(syllables) else blocks
        target = table[VOWELS.index(vowel)]
        for b in range(first, min(last, blocks)):
            w = min(1.0, (b - first + 1) / glide)
            track[b] = previous * (1 - w) + target * w
        previous = target
    track[:, 1] = 10 ** (track[:, 1] / 20)
    return track


@njit(cache=True)
def _resonate(source: np.ndarray, track: np.ndarray, block: int, sample_rate: float) -> np.ndarray:
    """Parallel 2-pole resonators (gain-normalised band-passes), coefficients per block of ``track``."""
    out = np.zeros_like(source)
    y1, y2 = np.zeros(5), np.zeros(5)
    x1 = x2 = 0.0
    c0, a1, a2 = np.zeros(5), np.zeros(5), np.zeros(5)
    for b in range(track.shape[0]):
        for k in range(5):
            r = np.exp(-np.pi * track[b, 2, k] / sample_rate)
            c0[k] = (1 - r * r) * track[b, 1, k]
            a1[k] = -2 * r * np.cos(2 * np.pi * track[b, 0, k] / sample_rate)
            a2[k] = r * r
        for i in range(b * block, min((b + 1) * block, source.size)):
            x = source[i]
            acc = 0.0
            for k in range(5):
                y = c0[k] * (x - x2) - a1[k] * y1[k] - a2[k] * y2[k]
                y2[k] = y1[k]
                y1[k] = y
                acc += y
            x2 = x1
            x1 = x
            out[i] = acc
    return out


def _formant_filter(source: np.ndarray, track: np.ndarray) -> np.ndarray:
    """The source through the formant track (see :func:`_resonate`)."""
    return _resonate(np.ascontiguousarray(source, np.float64), np.ascontiguousarray(track), BLOCK,
                     float(SAMPLE_RATE))


def sing(patch: SingerPatch, notes: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Sing performed notes ``[n, 4]`` (onset s, duration s, MIDI pitch, velocity): float32 ``[2, samples]``
    (centred mono; the mix places and reverberates it)."""
    length = round(seconds * SAMPLE_RATE)
    f0 = np.zeros(length)
    amp = np.zeros(length)
    syllables: list[tuple[int, str]] = []
    consonants: list[tuple[int, str, float]] = []
    breaths: list[int] = []
    order = np.argsort(notes[:, 0])
    previous_end = -1.0
    for onset, duration, pitch, velocity in notes[order]:
        start, end = round(onset * SAMPLE_RATE), min(length, round((onset + max(duration, 0.08)) * SAMPLE_RATE))
        if start >= length or end <= start:
            continue
        if onset - previous_end >= 0.4:
            breaths.append(start)
        previous_end = onset + duration
        t = np.arange(end - start) / SAMPLE_RATE
        vibrato = patch.vibrato_cents * np.sin(2 * np.pi * patch.vibrato_hz * t) * np.minimum(t / 0.3, 1.0)
        f0[start:end] = 440.0 * 2 ** ((pitch - 69) / 12 + vibrato / 1200)
        rise, fall = min(0.04, duration / 3), min(0.06, duration / 3)
        shape = np.minimum(np.minimum(t / max(rise, 1e-3), 1.0), np.maximum((t[-1] - t) / max(fall, 1e-3), 0.0))
        amp[start:end] = np.maximum(amp[start:end], shape * (velocity / 127.0) ** 1.5)
        vowel = str(rng.choice(VOWELS))
        syllables.append((start, vowel))
        names = list(CONSONANTS)
        consonant = str(rng.choice(names, p=np.array([CONSONANTS[c][0] for c in names]) / sum(
            CONSONANTS[c][0] for c in names)))
        if consonant:
            consonants.append((start, consonant, CONSONANTS[consonant][1]))
        if rng.random() < patch.coda_s and duration > 0.25:
            consonants.append((end, str(rng.choice(["s", "t"])), 0.08))
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros((2, length), np.float32)
    # fill gaps with the neighbouring pitch so the phase runs on (the amplitude is zero there)
    idx = np.where(voiced, np.arange(length), 0)
    np.maximum.accumulate(idx, out=idx)
    f0 = np.where(voiced, f0, f0[idx])
    f0[f0 <= 0] = f0[voiced][0]
    f0 *= 1 + patch.jitter * np.cumsum(rng.standard_normal(length)) / np.sqrt(np.arange(1, length + 1))
    step = np.minimum(f0, SAMPLE_RATE * 0.45) / SAMPLE_RATE
    phase = np.mod(np.cumsum(step), 1.0)
    glottal = -saw(phase, step)
    pole = np.exp(-2 * np.pi * patch.tilt_hz / SAMPLE_RATE)
    glottal = signal.lfilter([1 - pole], [1, -pole], glottal) * 4.0
    aspiration = _band_noise(length, 500, 15000, rng) * (0.6 + 0.4 * np.cos(2 * np.pi * phase))
    source = (glottal + patch.breathiness * aspiration) * amp
    voice = _formant_filter(source, _formant_track(syllables, length, patch.voice))
    # above F5 the tract's response falls smoothly rather than ending: the source's harmonics continue there
    voice += signal.sosfilt(HIGH_TAIL, source) * 10 ** (patch.tail_db / 20)
    level = float(np.sqrt(np.mean(voice[amp > 0.1] ** 2))) if (amp > 0.1).any() else 1.0
    air = _band_noise(length, 6000, 20000, rng) * amp * level * 10 ** (patch.air_db / 20)
    out = voice + air
    for at, consonant, duration in consonants:
        n = round(duration * SAMPLE_RATE)
        start = max(0, at - n if at < length else length - n)
        n = min(n, length - start)
        if consonant in ("m", "l") or n <= 0:  # voiced onsets: the vowel's attack carries them
            continue
        low, high, gain_db = NOISE_BANDS[consonant]
        burst = _band_noise(n, low, high, rng)
        shape = np.hanning(n) if consonant not in ("t", "k") else np.exp(-np.arange(n) / (0.3 * n))
        burst *= shape / max(float(np.sqrt(np.mean(burst**2))), 1e-9) * level * 10 ** (gain_db / 20)
        out[start:start + n] += burst
    for at in breaths:  # an intake before each phrase: broadband, strongest 1-8 kHz
        n = round(rng.uniform(0.25, 0.45) * SAMPLE_RATE)
        start = max(0, at - n - round(0.05 * SAMPLE_RATE))
        n = min(n, length - start)
        if n <= 0:
            continue
        breath = _band_noise(n, 700, 16000, rng) * np.sin(np.linspace(0, np.pi, n)) ** 2
        breath *= level * 10 ** (rng.uniform(-30, -18) / 20) / max(float(np.sqrt(np.mean(breath**2))), 1e-9)
        out[start:start + n] += breath
    out = out.astype(np.float32)
    return np.stack([out, out])
