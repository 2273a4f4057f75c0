"""Mixing and mastering: per-stem effect chains (pedalboard) and a mix-bus compressor + limiter whose gain is
applied to every stem, so the stems still sum exactly to the mastered song.

Per stem (:class:`StemFx`, drawn by :func:`draw_stem_fx`): excitation noise for played instruments,
saturation (tanh at 2x oversampling, which
writes real harmonics above a band-limited source's edge), high-pass, low shelf, a peak cut, the high-shelf
lift mixing engineers give vocals, cymbals and acoustic instruments, compression, chorus or phaser, and a
send to the song's room or plate reverb. On the bus (:class:`BusFx`): glue compression, gain to the song's
target loudness (ITU-R BS.1770 via pyloudnorm) and a look-ahead peak limiter at the ceiling. Every
parameter is drawn per song and stored in its metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from apollo_restore.data.generator.voices import njit

SAMPLE_RATE = 44100
#: style -> (target loudness range in LUFS, bus compression ratio range)
MASTERING = {"classical": ((-26.0, -16.0), (1.0, 1.3)), "folk": ((-20.0, -12.0), (1.1, 1.8)),
             "pop": ((-14.0, -9.0), (1.3, 2.5)), "rock": ((-13.0, -8.0), (1.3, 2.5)),
             "electronic": ((-12.0, -7.0), (1.3, 2.5))}
CONTROL_BLOCK = 32  # samples per gain-computer step (0.7 ms)


@dataclass
class StemFx:
    """One stem's chain; a zero gain / drive / mix switches that stage off."""

    saturation_db: float = 0.0  # tanh drive (0: off)
    saturation_mix: float = 0.0
    highpass_hz: float = 0.0
    low_shelf_hz: float = 150.0
    low_shelf_db: float = 0.0
    peak_hz: float = 500.0
    peak_db: float = 0.0
    peak_q: float = 1.0
    high_shelf_hz: float = 10000.0
    high_shelf_db: float = 0.0
    comp_threshold_db: float = 0.0  # re the stem's peak (0: off)
    comp_ratio: float = 1.0
    comp_attack_ms: float = 10.0
    comp_release_ms: float = 120.0
    chorus_mix: float = 0.0
    chorus_rate_hz: float = 0.8
    phaser_mix: float = 0.0
    phaser_rate_hz: float = 0.4
    reverb_send: float = 0.0
    noise_db: float = 0.0  # excitation noise (bow, breath, mechanism) re the stem's level (0: off)
    noise_hz: float = 6000.0  # its high-pass

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


@dataclass
class BusFx:
    """Mix bus: glue compressor, loudness target, limiter ceiling (all per song)."""

    comp_threshold_db: float = -12.0  # re the mix's peak
    comp_ratio: float = 2.0
    comp_attack_ms: float = 20.0
    comp_release_ms: float = 200.0
    target_lufs: float = -12.0
    ceiling_dbfs: float = -1.0
    limiter_release_ms: float = 80.0
    reverb: str = "room"  # room (noise impulse response) or plate (pedalboard's Freeverb)
    room_size: float = 0.5
    damping: float = 0.5
    rt60: float = 1.0
    predelay: float = 0.01

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


#: what a kind of stem gets: (chance of saturation, chance of an air shelf, shelf dB range, chance of chorus)
KIND_FX = {
    "vocals": (0.2, 0.7, (1.0, 5.0), 0.1), "drums": (0.25, 0.5, (1.0, 4.0), 0.0),
    "percussion": (0.2, 0.4, (1.0, 3.0), 0.0), "bass": (0.5, 0.1, (0.5, 2.0), 0.1),
    "guitar": (0.35, 0.4, (1.0, 4.0), 0.3), "keys": (0.2, 0.3, (1.0, 3.0), 0.35),
    "synth": (0.3, 0.3, (1.0, 4.0), 0.3), "acoustic": (0.1, 0.35, (1.0, 3.0), 0.05),
}
#: kinds played on a real instrument get excitation noise (bow, breath, mechanism): level range re the stem
NOISE_DB = {"acoustic": (-54.0, -38.0), "keys": (-62.0, -46.0), "guitar": (-56.0, -40.0), "bass": (-62.0, -48.0)}


def draw_stem_fx(kind: str, style: str, band_limited: bool, rng: np.random.Generator) -> StemFx:
    """A chain for a stem of ``kind`` (KIND_FX) in ``style``; a band-limited source always gets saturation
    strong enough to write harmonics above its edge."""
    p_sat, p_air, air_db, p_chorus = KIND_FX[kind]
    gentle = style == "classical"
    fx = StemFx()
    if band_limited or (rng.random() < p_sat * (0.3 if gentle else 1.0)):
        fx.saturation_db = float(rng.uniform(10, 20) if band_limited else rng.uniform(3, 14))
        fx.saturation_mix = float(rng.uniform(0.25, 0.6) if band_limited else rng.uniform(0.1, 0.5))
    if kind in NOISE_DB and rng.random() < 0.7:
        fx.noise_db, fx.noise_hz = float(rng.uniform(*NOISE_DB[kind])), float(rng.uniform(3000, 8000))
    fx.highpass_hz = float(0.0 if kind == "bass" else rng.uniform(25, 160 if kind in ("vocals", "keys") else 80))
    fx.low_shelf_db = float(rng.uniform(-3, 3))
    fx.low_shelf_hz = float(rng.uniform(80, 250))
    fx.peak_hz, fx.peak_db, fx.peak_q = float(rng.uniform(250, 4000)), float(rng.uniform(-5, 2)), float(
        rng.uniform(0.7, 2.5))
    if rng.random() < p_air:
        fx.high_shelf_hz = float(rng.uniform(7000, 12500))
        fx.high_shelf_db = float(rng.uniform(*air_db) * (0.6 if gentle else 1.0))
    if rng.random() < (0.25 if gentle else 0.6):
        fx.comp_threshold_db = float(rng.uniform(-18, -6))
        fx.comp_ratio = float(rng.uniform(1.3, 2.0) if gentle else rng.uniform(1.5, 4.0))
        fx.comp_attack_ms = float(rng.uniform(1, 30))
        fx.comp_release_ms = float(rng.uniform(40, 300))
    if rng.random() < p_chorus * (0.3 if gentle else 1.0):
        fx.chorus_mix, fx.chorus_rate_hz = float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.3, 1.5))
    elif kind in ("keys", "guitar", "synth") and rng.random() < (0.0 if gentle else 0.12):
        fx.phaser_mix, fx.phaser_rate_hz = float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.1, 1.0))
    sends = {"vocals": (0.12, 0.35), "drums": (0.03, 0.15), "bass": (0.0, 0.05)}.get(kind, (0.05, 0.3))
    fx.reverb_send = float(rng.uniform(*sends) * (1.5 if gentle else 1.0))
    return fx


def draw_bus_fx(style: str, rng: np.random.Generator) -> BusFx:
    (low, high), (ratio_low, ratio_high) = MASTERING[style]
    plate = (style in ("pop", "electronic") and rng.random() < 0.6) or rng.random() < 0.2
    return BusFx(comp_threshold_db=float(rng.uniform(-14, -6)), comp_ratio=float(rng.uniform(ratio_low, ratio_high)),
                 comp_attack_ms=float(rng.uniform(5, 40)), comp_release_ms=float(rng.uniform(80, 400)),
                 target_lufs=float(rng.uniform(low, high)), ceiling_dbfs=float(rng.uniform(-1.5, -0.3)),
                 limiter_release_ms=float(rng.uniform(30, 200)), reverb="plate" if plate else "room",
                 room_size=float(rng.uniform(0.3, 0.85)), damping=float(rng.uniform(0.2, 0.7)),
                 rt60=float(rng.uniform(0.8, 2.5) if style == "classical" else rng.uniform(0.3, 1.6)),
                 predelay=float(rng.uniform(0.005, 0.04)))


def saturate(audio: np.ndarray, drive_db: float, mix: float) -> np.ndarray:
    """Parallel tanh saturation at 2x oversampling (soxr), level-matched to the dry signal."""
    import soxr

    up = soxr.resample(np.ascontiguousarray(audio.T), SAMPLE_RATE, 2 * SAMPLE_RATE, quality="LQ")
    gain = 10 ** (drive_db / 20) / max(float(np.abs(up).max()), 1e-9)
    wet = np.tanh(up * gain)
    wet = soxr.resample(wet, 2 * SAMPLE_RATE, SAMPLE_RATE, quality="LQ").T[:, : audio.shape[1]]
    wet *= np.sqrt(np.mean(audio**2) / max(float(np.mean(wet**2)), 1e-20))
    return ((1 - mix) * audio + mix * wet).astype(np.float32)


def excitation_noise(audio: np.ndarray, level_db: float, highpass_hz: float, rng: np.random.Generator) -> np.ndarray:
    """High-passed noise that follows the stem's 10 ms RMS envelope, ``level_db`` under its RMS: the bow, breath
    and mechanism noise a sampled or synthesised instrument lacks, which makes a real top octave noise-like."""
    from scipy import signal

    frame = 441
    n = audio.shape[1] // frame * frame
    rms = np.sqrt(np.mean(np.square(audio[:, :n]).reshape(2, -1, frame), axis=(0, 2)))
    envelope = np.interp(np.arange(audio.shape[1]), (np.arange(rms.size) + 0.5) * frame, rms)
    sos = signal.butter(2, highpass_hz, "highpass", fs=SAMPLE_RATE, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(audio.shape).astype(np.float32), axis=1)
    noise /= max(float(np.sqrt(np.mean(noise**2))), 1e-12)
    return (noise * envelope * 10 ** (level_db / 20)).astype(np.float32)


def process_stem(audio: np.ndarray, fx: StemFx, rng: np.random.Generator) -> np.ndarray:
    """Run one stem ``[2, n]`` through its chain (dry; the reverb send is added by the mix)."""
    import pedalboard as pb

    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if fx.noise_db < 0:
        audio = audio + excitation_noise(audio, fx.noise_db, fx.noise_hz, rng)
    if fx.saturation_db > 0 and fx.saturation_mix > 0:
        audio = saturate(audio, fx.saturation_db, fx.saturation_mix)
    chain = []
    if fx.highpass_hz > 0:
        chain.append(pb.HighpassFilter(cutoff_frequency_hz=fx.highpass_hz))
    if fx.low_shelf_db:
        chain.append(pb.LowShelfFilter(cutoff_frequency_hz=fx.low_shelf_hz, gain_db=fx.low_shelf_db))
    if fx.peak_db:
        chain.append(pb.PeakFilter(cutoff_frequency_hz=fx.peak_hz, gain_db=fx.peak_db, q=fx.peak_q))
    if fx.high_shelf_db:
        chain.append(pb.HighShelfFilter(cutoff_frequency_hz=fx.high_shelf_hz, gain_db=fx.high_shelf_db))
    if fx.comp_threshold_db < 0:
        peak_db = 20 * np.log10(max(float(np.abs(audio).max()), 1e-9))
        chain.append(pb.Compressor(threshold_db=peak_db + fx.comp_threshold_db, ratio=fx.comp_ratio,
                                   attack_ms=fx.comp_attack_ms, release_ms=fx.comp_release_ms))
    if fx.chorus_mix > 0:
        chain.append(pb.Chorus(rate_hz=fx.chorus_rate_hz, depth=0.25, mix=fx.chorus_mix))
    if fx.phaser_mix > 0:
        chain.append(pb.Phaser(rate_hz=fx.phaser_rate_hz, mix=fx.phaser_mix))
    return pb.Pedalboard(chain)(audio, SAMPLE_RATE) if chain else audio


def _block_peak_db(audio: np.ndarray) -> np.ndarray:
    n = audio.shape[1] // CONTROL_BLOCK * CONTROL_BLOCK
    peaks = np.abs(audio[:, :n]).max(axis=0).reshape(-1, CONTROL_BLOCK).max(axis=1)
    tail = np.abs(audio[:, n:]).max() if audio.shape[1] > n else None
    if tail is not None:
        peaks = np.append(peaks, tail)
    return 20 * np.log10(np.maximum(peaks, 1e-9))


@njit(cache=True)
def _smooth_loop(target_db: np.ndarray, attack: float, release: float) -> np.ndarray:
    out = np.empty_like(target_db)
    state = 0.0
    for k in range(target_db.size):
        coefficient = attack if target_db[k] < state else release
        state = coefficient * state + (1 - coefficient) * target_db[k]
        out[k] = state
    return out


def _smooth(target_db: np.ndarray, attack_ms: float, release_ms: float) -> np.ndarray:
    """One-pole attack/release smoothing of a gain-reduction track (dB, <= 0) per control block."""
    step = CONTROL_BLOCK / SAMPLE_RATE * 1000
    return _smooth_loop(np.ascontiguousarray(target_db, np.float64), float(np.exp(-step / max(attack_ms, 0.01))),
                        float(np.exp(-step / max(release_ms, 0.01))))


def _to_samples(gain_db: np.ndarray, length: int) -> np.ndarray:
    centres = (np.arange(gain_db.size) + 0.5) * CONTROL_BLOCK
    return 10 ** (np.interp(np.arange(length), centres, gain_db) / 20)


def compressor_gain(mix: np.ndarray, fx: BusFx) -> np.ndarray:
    """Per-sample gain of a peak-sensing compressor (6 dB soft knee) on ``mix`` ``[2, n]``."""
    level = _block_peak_db(mix)
    over = level - (level.max() + fx.comp_threshold_db)
    knee = 6.0
    reduction = np.where(over <= -knee / 2, 0.0,
                         np.where(over >= knee / 2, over, (over + knee / 2) ** 2 / (2 * knee)))
    reduction *= -(1 - 1 / fx.comp_ratio)
    return _to_samples(_smooth(reduction, fx.comp_attack_ms, fx.comp_release_ms), mix.shape[1])


def limiter_gain(mix: np.ndarray, ceiling_dbfs: float, release_ms: float) -> np.ndarray:
    """Per-sample gain that keeps ``mix`` under ``ceiling_dbfs``: block peaks, a 5 ms look-ahead minimum,
    release smoothing, and a final per-sample guarantee."""
    from scipy.ndimage import minimum_filter1d

    ceiling = 10 ** (ceiling_dbfs / 20)
    need = np.minimum(0.0, ceiling_dbfs - _block_peak_db(mix))
    lookahead = max(1, round(0.005 * SAMPLE_RATE / CONTROL_BLOCK))
    held = minimum_filter1d(need, 2 * lookahead + 1, mode="nearest")
    gain = _to_samples(_smooth(held, 0.01, release_ms), mix.shape[1])
    peak = np.abs(mix).max(axis=0) * gain
    return gain * np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))


def integrated_lufs(mix: np.ndarray) -> float:
    """ITU-R BS.1770-4 integrated loudness of ``[2, n]`` with pyloudnorm's K-weighting filters and its block
    layout (400 ms, 75 % overlap), gated as the standard says, vectorised over blocks; -inf for silence."""
    import pyloudnorm
    from scipy import signal as sps

    meter = pyloudnorm.Meter(SAMPLE_RATE)
    weighted = np.asarray(mix, np.float64)
    for stage in meter._filters.values():
        weighted = stage.passband_gain * sps.lfilter(stage.b, stage.a, weighted, axis=1)
    block = meter.block_size
    count = int(np.round((mix.shape[1] / SAMPLE_RATE - block) / (block * 0.25))) + 1
    if count < 1:
        return float("-inf")
    j = np.arange(count)
    lower = (block * j * 0.25 * SAMPLE_RATE).astype(np.int64)
    upper = (block * (j * 0.25 + 1) * SAMPLE_RATE).astype(np.int64)
    energy = np.concatenate([[0.0], np.cumsum(np.square(weighted).sum(axis=0))])
    z = (energy[np.minimum(upper, energy.size - 1)] - energy[lower]) / (block * SAMPLE_RATE)
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(z)
    gated = z[loudness >= -70.0]
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    kept = z[(loudness >= -70.0) & (loudness > relative)]
    return float(-0.691 + 10 * np.log10(kept.mean())) if kept.size else float("-inf")


def master_gain(mix: np.ndarray, fx: BusFx) -> tuple[np.ndarray, float]:
    """The bus gain ``[n]`` (compressor, make-up to the target loudness, limiter) and the loudness reached."""
    gain = compressor_gain(mix, fx)
    loudness = integrated_lufs(mix * gain)
    makeup = 10 ** ((fx.target_lufs - loudness) / 20) if np.isfinite(loudness) else 1.0
    for _ in range(8):  # the limiter takes some loudness away: aim again
        total = gain * makeup
        limited = total * limiter_gain(mix * total, fx.ceiling_dbfs, fx.limiter_release_ms)
        reached = integrated_lufs(mix * limited)
        if not np.isfinite(reached) or abs(reached - fx.target_lufs) < 0.3:
            break
        makeup *= 10 ** (min(fx.target_lufs - reached, 6.0) / 20)
    return limited.astype(np.float32), reached


def reverb(audio: np.ndarray, fx: BusFx, room_spectrum: np.ndarray | None, size: int) -> np.ndarray:
    """The song's reverb of one stem: convolution with the room response (its FFT given) or the plate."""
    if fx.reverb == "plate":
        import pedalboard as pb

        plate = pb.Reverb(room_size=fx.room_size, damping=fx.damping, wet_level=1.0, dry_level=0.0, width=1.0)
        return plate(np.ascontiguousarray(audio, dtype=np.float32), SAMPLE_RATE)
    from scipy import fft

    mono = np.asarray(audio.mean(axis=0), np.float32)  # float32 FFTs: twice as fast, ample for a reverb tail
    return fft.irfft(fft.rfft(mono, size) * room_spectrum, size, axis=1)[:, : audio.shape[1]]
