"""One song: arrange a score (instruments, accompaniment, performance), render its stems, mix them.

:func:`plan_song` is pure (seeded) arrangement; :func:`render_song` turns a plan into stereo 44.1 kHz
stems ``{name: [2, samples]}`` with FluidSynth, real drum and guitar recordings, panning, a per-song
room reverb and levels. The stems sum to the song's mix.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from apollo_restore.data.generator.samples import (
    SAMPLE_RATE,
    STRUM_SPLITS,
    load_kit,
    pick_layer,
    strum_audio,
    strum_index,
)
from apollo_restore.data.generator.scores import ScoreNotes

#: name -> (GM program, stem family as in MoisesDB)
INSTRUMENTS = {
    "choir_aahs": (52, "vocals"), "voice_oohs": (53, "vocals"), "violin": (40, "bowed_strings"),
    "viola": (41, "bowed_strings"), "cello": (42, "bowed_strings"), "contrabass": (43, "bowed_strings"),
    "string_ensemble": (48, "bowed_strings"), "fiddle": (110, "bowed_strings"), "flute": (73, "wind"),
    "oboe": (68, "wind"), "clarinet": (71, "wind"), "bassoon": (70, "wind"), "english_horn": (69, "wind"),
    "trumpet": (56, "wind"), "trombone": (57, "wind"), "french_horn": (60, "wind"), "tuba": (58, "wind"),
    "soprano_sax": (64, "wind"), "alto_sax": (65, "wind"), "baritone_sax": (67, "wind"),
    "piano": (0, "piano"), "electric_piano": (4, "other_keys"), "harpsichord": (6, "other_keys"),
    "church_organ": (19, "other_keys"), "drawbar_organ": (16, "other_keys"), "accordion": (21, "other_keys"),
    "harmonica": (22, "wind"), "nylon_guitar": (24, "guitar"), "steel_guitar": (25, "guitar"),
    "harp": (46, "other_plucked"), "acoustic_bass": (32, "bass"), "fingered_bass": (33, "bass"),
    "fretless_bass": (35, "bass"),
}
PALETTES = {
    "high": ("violin", "flute", "oboe", "clarinet", "trumpet", "soprano_sax", "church_organ", "piano",
             "harpsichord", "accordion", "fiddle", "nylon_guitar", "steel_guitar", "harmonica"),
    "mid": ("viola", "clarinet", "english_horn", "french_horn", "alto_sax", "trombone", "church_organ",
            "piano", "string_ensemble", "electric_piano", "steel_guitar", "harp"),
    "low": ("cello", "contrabass", "bassoon", "tuba", "trombone", "baritone_sax", "acoustic_bass",
            "fingered_bass", "fretless_bass"),
    "pad": ("piano", "electric_piano", "church_organ", "drawbar_organ", "string_ensemble", "accordion", "harp"),
    "voice": ("choir_aahs", "voice_oohs"),
}
#: genre -> (tempo range in quarter notes per minute, chance of drums, of guitar strums, of an all-voice cast)
GENRE_STYLE = {
    "chorale": ((60, 92), 0.75, 0.5, 0.5), "renaissance": ((90, 140), 0.75, 0.45, 0.5),
    "madrigal": ((70, 110), 0.75, 0.45, 0.5), "quartet": ((80, 140), 0.6, 0.4, 0.0),
    "folk": ((90, 140), 0.9, 0.6, 0.0),
}
QUALITIES = {"major": (0, 4, 7), "minor": (0, 3, 7), "m7b5": (0, 3, 6, 10)}
DRUM_VELOCITY = {"kick": 100, "snare": 95, "hat_closed": 70, "hat_open": 80, "ride": 75, "crash": 100, "tom": 90}


@dataclass
class StemPlan:
    """One stem: a FluidSynth part (``notes`` in seconds: onset, duration, pitch, velocity), the drums
    (``hits``: time s, role, velocity 0-1) or guitar strums (``strums``: time s, root, quality, direction)."""

    name: str
    family: str
    source: str
    gain_db: float
    pan: float
    send: float
    program: int | None = None
    notes: np.ndarray | None = None
    hits: list[tuple[float, str, float]] = field(default_factory=list)
    strums: list[tuple[float, int, str, str]] = field(default_factory=list)


@dataclass
class SongPlan:
    song_id: str
    split: str
    score: ScoreNotes
    seconds: float
    qpm: float
    transpose: int
    kit: str | None
    rt60: float
    predelay: float
    peak_db: float
    seed: int
    stems: list[StemPlan]


def bar_chords(parts: list[np.ndarray], bar: float, n_bars: int) -> list[tuple[int, str]]:
    """Per bar, the (root pitch class, quality) triad that best covers the duration-weighted pitch classes
    of all ``parts`` (``[n, 3]`` ql arrays); a bar without notes repeats the previous chord."""
    hist = np.zeros((n_bars, 12))
    for part in parts:
        bars = np.minimum((part[:, 0] // bar).astype(int), n_bars - 1)
        np.add.at(hist, (bars, part[:, 2].astype(int) % 12), part[:, 1])
    names, templates = [], []
    for quality, intervals in QUALITIES.items():
        for root in range(12):
            template = np.zeros(12)
            template[[(root + i) % 12 for i in intervals]] = 1.0 if quality != "m7b5" else 0.8
            names.append((root, quality))
            templates.append(template)
    scores = hist @ np.asarray(templates).T
    chords, previous = [], (0, "major")
    for b in range(n_bars):
        previous = names[int(np.argmax(scores[b]))] if hist[b].sum() > 0 else previous
        chords.append(previous)
    return chords


def _perform(part: np.ndarray, spb: float, bar: float, rng: np.random.Generator, legato: float,
             transpose: int, cap: float) -> np.ndarray:
    """Quarter-note part -> performed notes ``[n, 4]`` in seconds with timing jitter, accents and phrasing."""
    onset = part[:, 0] * spb + rng.normal(0.0, 0.006, len(part))
    duration = part[:, 1] * spb * legato
    in_bar = np.mod(part[:, 0], bar)
    accent = np.where(in_bar < 1e-6, 12.0, np.where(np.mod(in_bar, 1.0) < 1e-6, 5.0, 0.0))
    phrase = 10.0 * np.sin(2 * np.pi * part[:, 0] / (bar * 8) + rng.uniform(0, 2 * np.pi))
    velocity = np.clip(rng.uniform(60, 100) + accent + phrase + rng.normal(0, 6, len(part)), 20, 127)
    pitch = part[:, 2] + transpose
    pitch = np.where(pitch < 28, pitch + 12, np.where(pitch > 100, pitch - 12, pitch))
    notes = np.stack([np.maximum(onset, 0.0), duration, pitch, velocity], axis=1)
    notes = notes[notes[:, 0] < cap]
    notes[:, 1] = np.minimum(notes[:, 1], cap + 1.0 - notes[:, 0])
    return notes


def _accompaniment(chords: list[tuple[int, str]], bar: float) -> tuple[np.ndarray, np.ndarray]:
    """Generated bass (roots on each beat group) and pad (sustained chords) for a melody, in ql."""
    bass, pad = [], []
    beats = [0.0, bar / 2] if bar >= 4 else [0.0]
    for b, (root, quality) in enumerate(chords):
        start = b * bar
        length = bar / len(beats)
        bass += [(start + t, length * 0.9, 36 + (root + (7 if k % 2 else 0)) % 12) for k, t in enumerate(beats)]
        pad += [(start, bar * 0.98, 55 + (root + i) % 12) for i in QUALITIES[quality][:3]]
    return np.asarray(bass, np.float64), np.asarray(pad, np.float64)


def _drum_hits(n_bars: int, bar: float, spb: float, rng: np.random.Generator, cap: float
               ) -> list[tuple[float, str, float]]:
    """A groove for the meter (rock, half-time or ride; waltz / 6/8 in triple time) with fills, crashes on
    phrase starts, timing jitter and velocity variation."""
    triple = abs(bar - 3.0) < 1e-6 or abs(bar - 1.5) < 1e-6
    style = "waltz" if triple else str(rng.choice(["rock", "halftime", "ride"]))
    grid = {"rock": [(0, "kick"), (1, "snare"), (2, "kick"), (2.5, "kick"), (3, "snare")],
            "halftime": [(0, "kick"), (1.5, "kick"), (2, "snare")],
            "ride": [(0, "kick"), (1, "snare"), (2, "kick"), (3, "snare")],
            "waltz": [(0, "kick"), (1, "snare"), (2, "snare")]}[style]
    cymbal = "ride" if style == "ride" else str(rng.choice(["hat_closed", "hat_closed", "hat_open"]))
    step = 1.0 if style == "waltz" else 0.5
    hits = []
    for b in range(n_bars):
        start = b * bar
        pattern = [(t, r) for t, r in grid if t < bar]
        pattern += [(t, cymbal) for t in np.arange(0, bar, step)]
        if b % 8 == 7:  # fill on the last beat of a phrase
            pattern = [(t, r) for t, r in pattern if t < bar - 1] + [(bar - 1 + k / 4, "tom") for k in range(4)]
        if b % 8 == 0:
            pattern.append((0.0, "crash"))
        for t, role in pattern:
            time = (start + t) * spb + rng.normal(0, 0.004)
            if time < cap:
                velocity = DRUM_VELOCITY[role] * (1.1 if t == 0 else 1.0) + rng.normal(0, 8)
                hits.append((max(time, 0.0), role, float(np.clip(velocity, 20, 127) / 127)))
    return hits


def _strum_times(chords: list[tuple[int, str]], bar: float, spb: float, transpose: int,
                 rng: np.random.Generator, cap: float) -> list[tuple[float, int, str, str]]:
    """Down-strokes on the beats, up-strokes on the off-beats between, following the bar chords."""
    per_bar = [0.0, 1.0, 1.5, 2.5, 3.0] if bar >= 4 else list(np.arange(0, bar))
    strums = []
    for b, (root, quality) in enumerate(chords):
        for t in per_bar:
            time = (b * bar + t) * spb + rng.normal(0, 0.008)
            if time < cap:
                direction = "DOWN" if float(t).is_integer() else "UP"
                strums.append((max(time, 0.0), (root + transpose) % 12, quality, direction))
    return strums


def plan_song(score: ScoreNotes, song_id: str, split: str, seed: int, max_seconds: float,
              kits: list[str]) -> SongPlan:
    """Arrange ``score`` for a song, all choices drawn from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    tempo_range, p_drums, p_strums, p_choir = GENRE_STYLE[score.genre]
    qpm = score.tempo_qpm if score.tempo_qpm and 40 <= score.tempo_qpm <= 200 else rng.uniform(*tempo_range)
    spb = 60.0 / qpm
    cap = min(score.quarters * spb, max_seconds)
    n_bars = int(np.ceil(score.quarters / score.bar_quarters))
    transpose = int(rng.integers(-3, 4))
    chords = bar_chords(score.parts, score.bar_quarters, n_bars)
    parts = list(score.parts)
    names = list(score.part_names)
    if len(parts) == 1:  # a folk tune: generate its accompaniment
        bass, pad = _accompaniment(chords, score.bar_quarters)
        parts += [bass, pad]
        names += ["generated bass", "generated chords"]
    choir = rng.random() < p_choir
    stems: list[StemPlan] = []
    order = np.argsort([-np.median(p[:, 2]) for p in parts[: len(score.parts)]])
    for k, part in enumerate(parts):
        median = float(np.median(part[:, 2]))
        if names[k] == "generated chords":
            palette = PALETTES["pad"]
        elif choir or (len(parts) > 1 and k < len(score.parts) and rng.random() < 0.12):
            palette = PALETTES["voice"]
        else:
            palette = PALETTES["high" if median >= 65 else "mid" if median >= 52 else "low"]
        instrument = str(rng.choice(palette))
        program, family = INSTRUMENTS[instrument]
        legato = 0.98 if family in ("vocals", "bowed_strings", "wind", "other_keys") else rng.uniform(0.8, 0.95)
        rank = int(np.nonzero(order == k)[0][0]) if k < len(score.parts) else len(score.parts)
        pan = float(np.clip(rng.normal(0, 0.35) + (0.3 if rank % 2 else -0.3) * (len(parts) > 2), -0.8, 0.8))
        lead = k == 0 and len(score.parts) == 1
        stems.append(StemPlan(f"{k:02d}_{family}_{instrument}", family, f"{names[k]} ({score.source})",
                              float(rng.uniform(-3, 0) if lead else rng.uniform(-9, -2)), pan,
                              float(rng.uniform(0.05, 0.35)), program,
                              _perform(part, spb, score.bar_quarters, rng, legato, transpose, cap)))
    kit = str(rng.choice(kits)) if kits and rng.random() < p_drums else None
    if kit:
        stems.append(StemPlan(f"{len(stems):02d}_drums_{kit.replace(' ', '_')}", "drums", f"Hydrogen kit {kit}",
                              float(rng.uniform(-4, 0)), 0.0, float(rng.uniform(0.02, 0.15)),
                              hits=_drum_hits(n_bars, score.bar_quarters, spb, rng, cap)))
    if rng.random() < p_strums and split in STRUM_SPLITS:
        strums = _strum_times(chords, score.bar_quarters, spb, transpose, rng, cap)
        stems.append(StemPlan(f"{len(stems):02d}_guitar_acoustic_strums", "guitar", "belofilms guitar strums",
                              float(rng.uniform(-8, -2)), float(rng.choice([-0.5, 0.5])),
                              float(rng.uniform(0.05, 0.25)), strums=strums))
    return SongPlan(song_id, split, score, cap + 2.0, float(qpm), transpose, kit, float(rng.uniform(0.3, 2.0)),
                    float(rng.uniform(0.005, 0.03)), float(rng.uniform(-6.0, -1.0)), seed, stems)


def room_impulse(rt60: float, predelay: float, rng: np.random.Generator) -> np.ndarray:
    """Stereo room response ``[2, n]``: pre-delay, then decorrelated noise decaying by 60 dB in ``rt60``,
    faster at high frequencies (4 bands), unit energy."""
    n = round(min(rt60 * 1.2, 3.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    edges = [0, 1000, 4000, 10000, SAMPLE_RATE]
    ir = np.zeros((2, n))
    for (low, high), scale in zip(itertools.pairwise(edges), (1.0, 0.85, 0.6, 0.35), strict=True):
        band = np.fft.irfft(spectrum * ((freqs >= low) & (freqs < high)), n, axis=1)
        ir += band * np.exp(-6.91 * t / (rt60 * scale))
    ir = np.pad(ir, ((0, 0), (round(predelay * SAMPLE_RATE), 0)))
    return (ir / np.sqrt(np.sum(ir**2) / 2)).astype(np.float32)


def _place(out: np.ndarray, audio: np.ndarray, at: int, gain: float, until: int | None = None) -> None:
    """Add ``audio`` ``[2, n]`` * gain into ``out`` from sample ``at`` (cut at ``until`` with a 10 ms fade)."""
    end = min(out.shape[1], at + audio.shape[1], until or out.shape[1])
    if end <= at:
        return
    piece = audio[:, : end - at] * gain
    if until is not None and at + audio.shape[1] > until:
        fade = min(441, piece.shape[1])
        piece[:, -fade:] *= np.linspace(1.0, 0.0, fade)
    out[:, at:end] += piece


def _render_drums(stem: StemPlan, kit_name: str, length: int, rng: np.random.Generator) -> np.ndarray:
    kit = load_kit(kit_name)
    choice = {role: instruments[rng.integers(len(instruments))] for role, instruments in kit.roles.items()}
    fallback = {"hat_open": "hat_closed", "hat_closed": "ride", "ride": "hat_closed", "crash": "ride",
                "tom": "snare"}
    out = np.zeros((2, length), np.float32)
    for time, role, velocity in stem.hits:
        while role not in choice and role in fallback:
            role = fallback[role]
        if role in choice:
            layer = pick_layer(choice[role], velocity, rng)
            _place(out, layer.audio, round(time * SAMPLE_RATE), velocity**1.5)
    return out


def _render_strums(stem: StemPlan, length: int, rng: np.random.Generator) -> np.ndarray:
    """Each strum: the recorded chord (or a same-quality chord up to 2 semitones away, pitch-shifted), in
    the dynamics layer its velocity asks for, cut by the next strum."""
    index = strum_index()
    out = np.zeros((2, length), np.float32)
    times = [round(s[0] * SAMPLE_RATE) for s in stem.strums] + [None]
    for (_, root, quality, direction), at, until in zip(stem.strums, times[:-1], times[1:], strict=True):
        shift, entry = min(((s, index.get(((root - s) % 12, quality))) for s in (0, 1, -1, 2, -2)),
                           key=lambda pair: (pair[1] is None, abs(pair[0])))
        if entry is None:
            continue
        layers = entry[direction] or entry[""]
        velocity = float(np.clip(rng.normal(0.75 if direction == "DOWN" else 0.45, 0.15), 0.0, 0.999))
        layer = layers[min(len(layers) - 1, int((1.0 - velocity) * len(layers)))]
        _place(out, strum_audio(layer, shift), at, float(rng.uniform(0.8, 1.0)), until)
    return out


def _pan(audio: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power balance of ``[2, n]``: -1 left, 0 unchanged, +1 right."""
    angle = (pan + 1) * np.pi / 4
    return audio * (np.sqrt(2) * np.array([[np.cos(angle)], [np.sin(angle)]], np.float32))


def render_song(plan: SongPlan, renderer) -> dict[str, np.ndarray]:
    """Render a plan with a :class:`FluidRenderer`; returns ``{stem name: float32 [2, samples]}``."""
    from scipy import fft

    rng = np.random.default_rng([plan.seed, 1])
    length = round(plan.seconds * SAMPLE_RATE)
    ir = room_impulse(plan.rt60, plan.predelay, rng)
    size = fft.next_fast_len(length + ir.shape[1], real=True)
    room = fft.rfft(ir, size, axis=1)  # [2, bins], shared by every stem of the song
    stems = {}
    for stem in plan.stems:
        if stem.notes is not None:
            dry = renderer.render(stem.program, stem.notes, plan.seconds)
        elif stem.hits:
            dry = _render_drums(stem, plan.kit, length, rng)
        else:
            dry = _render_strums(stem, length, rng)
        peak = float(np.abs(dry).max())
        if peak < 1e-6:
            continue
        dry = _pan(dry / peak, stem.pan)
        wet = fft.irfft(fft.rfft(dry.mean(axis=0), size) * room, size, axis=1)[:, :length]
        stems[stem.name] = (dry + stem.send * wet) * np.float32(10 ** (stem.gain_db / 20))
    mix_peak = float(np.abs(sum(stems.values())).max()) if stems else 1.0
    scale = 10 ** (plan.peak_db / 20) / max(mix_peak, 1e-9)
    scale = min(scale, 0.99 / max(float(np.abs(s).max()) for s in stems.values())) if stems else scale
    return {name: audio * np.float32(scale) for name, audio in stems.items()}
