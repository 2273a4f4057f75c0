"""One song: arrange a score in a style, render its stems from full-band sources, mix and master them.

:func:`plan_song` is pure (seeded) arrangement: a style (classical, folk, pop, rock, electronic), its
instruments, performance, drum grooves, synth patches, singers and every production parameter.
:func:`render_song` turns a plan into stereo 44.1 kHz stems ``{name: [2, samples]}``: FluidSynth presets
(full-band ones dry, band-limited ones only behind saturation: :mod:`.presets`), real drum kits, loops and
guitar strums (:mod:`.samples`), synthesiser voices (:mod:`.voices`) and formant singers (:mod:`.singer`),
each through its effect chain and the song's reverb (:mod:`.production`); the mix-bus compressor and
limiter gain is applied to every stem, so the stems sum exactly to the mastered song.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apollo_restore.data.generator.presets import PresetBand
from apollo_restore.data.generator.production import (
    BusFx,
    StemFx,
    draw_bus_fx,
    draw_stem_fx,
    master_gain,
    process_stem,
    reverb,
)
from apollo_restore.data.generator.samples import (
    ELECTRONIC_KITS,
    LOOP_BEATS,
    SAMPLE_RATE,
    STRUM_SPLITS,
    load_kit,
    loop_audio,
    loops,
    pick_layer,
    strum_audio,
    strum_index,
)
from apollo_restore.data.generator.scores import ScoreNotes
from apollo_restore.data.generator.singer import SingerPatch, draw_singer, sing
from apollo_restore.data.generator.voices import (
    BASS_FAMILIES,
    SPLIT_FAMILIES,
    SynthPatch,
    draw_patch,
    noise_riser,
    render_synth,
)

#: name -> (GM program, stem family as in MoisesDB, effect kind)
INSTRUMENTS = {
    "choir_aahs": (52, "vocals", "vocals"), "voice_oohs": (53, "vocals", "vocals"),
    "violin": (40, "bowed_strings", "acoustic"), "viola": (41, "bowed_strings", "acoustic"),
    "cello": (42, "bowed_strings", "acoustic"), "contrabass": (43, "bowed_strings", "acoustic"),
    "string_ensemble": (48, "bowed_strings", "acoustic"), "fiddle": (110, "bowed_strings", "acoustic"),
    "flute": (73, "wind", "acoustic"), "oboe": (68, "wind", "acoustic"), "clarinet": (71, "wind", "acoustic"),
    "bassoon": (70, "wind", "acoustic"), "english_horn": (69, "wind", "acoustic"),
    "trumpet": (56, "wind", "acoustic"), "trombone": (57, "wind", "acoustic"),
    "french_horn": (60, "wind", "acoustic"), "tuba": (58, "wind", "acoustic"),
    "soprano_sax": (64, "wind", "acoustic"), "alto_sax": (65, "wind", "acoustic"),
    "baritone_sax": (67, "wind", "acoustic"), "piano": (0, "piano", "keys"),
    "bright_piano": (1, "piano", "keys"), "electric_piano": (4, "other_keys", "keys"),
    "harpsichord": (6, "other_keys", "keys"), "church_organ": (19, "other_keys", "keys"),
    "reed_organ": (20, "other_keys", "keys"), "drawbar_organ": (16, "other_keys", "keys"),
    "accordion": (21, "other_keys", "keys"), "harmonica": (22, "wind", "acoustic"),
    "nylon_guitar": (24, "guitar", "guitar"), "steel_guitar": (25, "guitar", "guitar"),
    "clean_guitar": (27, "guitar", "guitar"), "overdriven_guitar": (29, "guitar", "guitar"),
    "distortion_guitar": (30, "guitar", "guitar"), "harp": (46, "other_plucked", "acoustic"),
    "banjo": (105, "other_plucked", "acoustic"), "acoustic_bass": (32, "bass", "bass"),
    "fingered_bass": (33, "bass", "bass"), "picked_bass": (34, "bass", "bass"),
    "fretless_bass": (35, "bass", "bass"), "slap_bass": (36, "bass", "bass"),
    "saw_lead": (81, "other_keys", "synth"), "voice_lead": (85, "other_keys", "synth"),
    "new_age_pad": (88, "other_keys", "synth"), "choir_pad": (91, "other_keys", "synth"),
    "halo_pad": (94, "other_keys", "synth"), "brightness": (100, "other_keys", "synth"),
}
PALETTES = {
    "high": ("violin", "flute", "oboe", "clarinet", "trumpet", "soprano_sax", "church_organ", "piano",
             "harpsichord", "accordion", "fiddle", "nylon_guitar", "steel_guitar", "harmonica", "banjo"),
    "mid": ("viola", "clarinet", "english_horn", "french_horn", "alto_sax", "trombone", "church_organ",
            "piano", "string_ensemble", "electric_piano", "steel_guitar", "harp", "reed_organ"),
    "low": ("cello", "contrabass", "bassoon", "tuba", "trombone", "baritone_sax", "acoustic_bass",
            "fingered_bass", "fretless_bass"),
    "pad": ("piano", "electric_piano", "church_organ", "drawbar_organ", "string_ensemble", "accordion", "harp"),
    "voice": ("choir_aahs", "voice_oohs"),
    "pop_keys": ("piano", "bright_piano", "electric_piano", "steel_guitar", "clean_guitar", "new_age_pad",
                 "halo_pad", "string_ensemble", "drawbar_organ"),
    "pop_bass": ("fingered_bass", "picked_bass", "fretless_bass", "slap_bass"),
    "rock_guitar": ("overdriven_guitar", "distortion_guitar"),
    "lead": ("saw_lead", "voice_lead", "brightness", "alto_sax", "trumpet", "violin"),
}
#: score genre -> (tempo range qpm, chance of drums, of guitar strums, of an all-voice cast, style shares)
GENRE_STYLE = {
    "chorale": ((60, 92), 0.3, 0.3, 0.5, {"classical": 0.75, "pop": 0.1, "rock": 0.05, "electronic": 0.1}),
    "renaissance": ((90, 140), 0.3, 0.3, 0.5, {"classical": 0.8, "pop": 0.1, "rock": 0.05, "electronic": 0.05}),
    "madrigal": ((70, 110), 0.3, 0.3, 0.6, {"classical": 0.8, "pop": 0.1, "electronic": 0.1}),
    "quartet": ((80, 140), 0.2, 0.2, 0.0, {"classical": 0.85, "rock": 0.05, "electronic": 0.1}),
    "folk": ((90, 140), 0.9, 0.6, 0.0, {"folk": 0.45, "pop": 0.2, "rock": 0.15, "electronic": 0.2}),
}
STYLE_TEMPO = {"pop": (84, 128), "rock": (100, 160), "electronic": (118, 132)}
QUALITIES = {"major": (0, 4, 7), "minor": (0, 3, 7), "m7b5": (0, 3, 6, 10)}
DRUM_VELOCITY = {"kick": 100, "snare": 95, "hat_closed": 70, "hat_open": 80, "ride": 75, "crash": 100, "tom": 90}
#: chance that a melody part is sung by a formant singer, per style
SUNG = {"classical": 0.35, "folk": 0.35, "pop": 0.85, "rock": 0.8, "electronic": 0.5}


@dataclass
class StemPlan:
    """One stem and how to make it: a FluidSynth part (``notes`` in seconds: onset, duration, pitch,
    velocity), drum ``hits`` (time s, role, velocity 0-1), guitar ``strums`` (time s, root, quality,
    direction), a synth ``patch`` or a ``singer`` playing ``notes``, a ``loop`` file repeated at
    ``loop_rate``, or noise risers; then its effect chain ``fx``."""

    name: str
    family: str
    source: str
    gain_db: float
    pan: float
    fx: StemFx = field(default_factory=StemFx)
    program: int | None = None
    band_limited: bool = False
    notes: np.ndarray | None = None
    hits: list[tuple[float, str, float]] = field(default_factory=list)
    strums: list[tuple[float, int, str, str]] = field(default_factory=list)
    patch: SynthPatch | None = None
    singer: SingerPatch | None = None
    loop: str | None = None
    loop_rate: float = 1.0
    riser_bars: int = 0


@dataclass
class SongPlan:
    song_id: str
    split: str
    score: ScoreNotes
    style: str
    seconds: float
    qpm: float
    bar_seconds: float
    transpose: int
    kit: str | None
    bus: BusFx
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
             transpose: int, cap: float, jitter: float = 0.006) -> np.ndarray:
    """Quarter-note part -> performed notes ``[n, 4]`` in seconds with timing jitter, accents and phrasing."""
    onset = part[:, 0] * spb + rng.normal(0.0, jitter, len(part))
    duration = part[:, 1] * spb * legato
    in_bar = np.mod(part[:, 0], bar)
    accent = np.where(in_bar < 1e-6, 12.0, np.where(np.mod(in_bar, 1.0) < 1e-6, 5.0, 0.0))
    phrase = rng.uniform(8, 20) * np.sin(2 * np.pi * part[:, 0] / (bar * rng.choice([4, 8, 16])) + rng.uniform(0, 7))
    velocity = np.clip(rng.uniform(45, 100) + accent + phrase + rng.normal(0, 7, len(part)), 15, 127)
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


def _drum_hits(n_bars: int, bar: float, spb: float, rng: np.random.Generator, cap: float, style: str
               ) -> list[tuple[float, str, float]]:
    """A groove for the meter and style (rock, half-time, ride, pop, four-on-the-floor; waltz / 6/8 in triple
    time) with fills, crashes on phrase starts, timing jitter and velocity variation."""
    triple = abs(bar - 3.0) < 1e-6 or abs(bar - 1.5) < 1e-6
    if triple:
        groove = "waltz"
    elif style == "electronic":
        groove = "four"
    elif style == "pop":
        groove = str(rng.choice(["pop", "halftime", "four"]))
    else:
        groove = str(rng.choice(["rock", "halftime", "ride"]))
    grid = {"rock": [(0, "kick"), (1, "snare"), (2, "kick"), (2.5, "kick"), (3, "snare")],
            "halftime": [(0, "kick"), (1.5, "kick"), (2, "snare")],
            "ride": [(0, "kick"), (1, "snare"), (2, "kick"), (3, "snare")],
            "pop": [(0, "kick"), (1, "snare"), (1.75, "kick"), (2.5, "kick"), (3, "snare")],
            "four": [(0, "kick"), (1, "kick"), (1, "snare"), (2, "kick"), (3, "kick"), (3, "snare"),
                     (0.5, "hat_open"), (1.5, "hat_open"), (2.5, "hat_open"), (3.5, "hat_open")],
            "waltz": [(0, "kick"), (1, "snare"), (2, "snare")]}[groove]
    cymbal = "ride" if groove == "ride" else str(rng.choice(["hat_closed", "hat_closed", "hat_open"]))
    step = 1.0 if groove == "waltz" else float(rng.choice([0.5, 0.25])) if groove in ("pop", "four") else 0.5
    jitter = 0.001 if style == "electronic" else 0.004
    hits = []
    for b in range(n_bars):
        start = b * bar
        pattern = [(t, r) for t, r in grid if t < bar]
        pattern += [(t, "hat_closed" if groove == "four" else cymbal) for t in np.arange(0, bar, step)]
        if b % 8 == 7:  # fill on the last beat of a phrase
            pattern = [(t, r) for t, r in pattern if t < bar - 1] + [(bar - 1 + k / 4, "tom") for k in range(4)]
        if b % 8 == 0:
            pattern.append((0.0, "crash"))
        for t, role in pattern:
            time = (start + t) * spb + rng.normal(0, jitter)
            if time < cap:
                velocity = DRUM_VELOCITY[role] * (1.1 if t == 0 else 1.0) + rng.normal(0, 8)
                hits.append((max(time, 0.0), role, float(np.clip(velocity, 20, 127) / 127)))
    return hits


def _tile(parts: list[np.ndarray], quarters: float, times: int) -> list[np.ndarray]:
    """Each part repeated ``times`` times, ``quarters`` apart (a tune played through again)."""
    return [np.concatenate([p + np.array([k * quarters, 0, 0]) for k in range(times)]) for p in parts]


def _pattern_part(chords: list[tuple[int, str]], bar: float, kind: str) -> np.ndarray:
    """Generated parts in ql from the bar chords: ``power`` (8th-note root-fifth-octave), ``arp`` (16th
    chord tones over two octaves), ``pad`` (sustained triads), ``bass8`` (8th-note roots)."""
    rows = []
    for b, (root, quality) in enumerate(chords):
        start = b * bar
        tones = QUALITIES[quality][:3]
        if kind == "power":
            low = 40 + (root - 4) % 12
            rows += [(start + t, 0.45, p) for t in np.arange(0, bar, 0.5) for p in (low, low + 7, low + 12)]
        elif kind == "arp":
            pitches = [60 + (root + i) % 12 + 12 * octave for octave in (0, 1) for i in tones]
            rows += [(start + t, 0.22, pitches[k % len(pitches)]) for k, t in enumerate(np.arange(0, bar, 0.25))]
        elif kind == "pad":
            rows += [(start, bar * 0.98, 55 + (root + i) % 12) for i in tones]
        else:
            rows += [(start + t, 0.45, 33 + root % 12) for t in np.arange(0, bar, 0.5)]
    return np.asarray(rows, np.float64)


class _Arranger:
    """Draws instruments for one song: FluidSynth presets checked against the bank's bandwidth table."""

    def __init__(self, presets: dict[int, PresetBand], split: str, style: str, rng: np.random.Generator):
        self.presets, self.split, self.style, self.rng = presets, split, style, rng
        self.stems: list[StemPlan] = []

    def _name(self, family: str, label: str) -> str:
        return f"{len(self.stems):02d}_{family}_{label}"

    def preset(self, palette: tuple[str, ...]) -> str:
        """A palette instrument the bank holds (full-band ones four times as likely)."""
        names = [n for n in palette if INSTRUMENTS[n][0] in self.presets]
        weights = np.array([4.0 if self.presets[INSTRUMENTS[n][0]].full_band else 1.0 for n in names])
        return str(names[self.rng.choice(len(names), p=weights / weights.sum())])

    def fluid(self, instrument: str, notes: np.ndarray, source: str, gain_db: float, pan: float) -> None:
        program, family, kind = INSTRUMENTS[instrument]
        limited = not self.presets[program].full_band
        fx = draw_stem_fx(kind, self.style, limited, self.rng)
        self.stems.append(StemPlan(self._name(family, instrument), family, source, gain_db, pan, fx, program,
                                   limited, notes))

    def singer(self, notes: np.ndarray, source: str, gain_db: float, pan: float) -> None:
        patch = draw_singer(float(np.median(notes[:, 2])), self.rng)
        fx = draw_stem_fx("vocals", self.style, False, self.rng)
        self.stems.append(StemPlan(self._name("vocals", f"singer_{patch.voice}"), "vocals", source, gain_db, pan,
                                   fx, notes=notes, singer=patch))

    def synth(self, role: str, notes: np.ndarray, source: str, gain_db: float, pan: float) -> None:
        families = SPLIT_FAMILIES[self.split]
        choice = {"bass": [f for f in families if f in BASS_FAMILIES],
                  "pad": [f for f in families if f in ("supersaw", "noise_pad", "fm_keys")],
                  "lead": [f for f in families if f in ("pulse", "pluck", "sync_lead", "fm_keys")],
                  "arp": [f for f in families if f in ("pluck", "fm_keys", "pulse")]}[role]
        patch = draw_patch(str(self.rng.choice(choice)), self.rng)
        family = "bass" if role == "bass" else "other_keys"
        fx = draw_stem_fx("bass" if role == "bass" else "synth", self.style, False, self.rng)
        self.stems.append(StemPlan(self._name(family, f"synth_{patch.family}"), family, source, gain_db, pan, fx,
                                   notes=notes, patch=patch))

    def drums(self, hits: list, kit: str, gain_db: float) -> None:
        fx = draw_stem_fx("drums", self.style, False, self.rng)
        self.stems.append(StemPlan(self._name("drums", kit.replace(" ", "_").replace(":", "-")), "drums",
                                   f"drum kit {kit}", gain_db, 0.0, fx, hits=hits))

    def melody(self, notes: np.ndarray, palette: tuple[str, ...], source: str, gain_db: float) -> None:
        if self.rng.random() < SUNG[self.style]:
            self.singer(notes, source, gain_db, float(self.rng.uniform(-0.1, 0.1)))
        elif self.style == "electronic" and self.rng.random() < 0.6:
            self.synth("lead", notes, source, gain_db - 2, float(self.rng.uniform(-0.2, 0.2)))
        else:
            self.fluid(self.preset(palette), notes, source, gain_db, float(self.rng.uniform(-0.2, 0.2)))


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


def plan_song(score: ScoreNotes, song_id: str, split: str, seed: int, max_seconds: float, kits: list[str],
              presets: dict[int, PresetBand]) -> SongPlan:
    """Arrange ``score`` for a song, all choices drawn from ``default_rng(seed)``; ``presets`` is the bank's
    bandwidth table (which presets are full-band)."""
    rng = np.random.default_rng(seed)
    tempo_range, p_drums, p_strums, p_choir, styles = GENRE_STYLE[score.genre]
    style = str(rng.choice(list(styles), p=np.array(list(styles.values())) / sum(styles.values())))
    bar = score.bar_quarters
    if style in STYLE_TEMPO:
        qpm = rng.uniform(*STYLE_TEMPO[style])
    else:
        qpm = score.tempo_qpm if score.tempo_qpm and 40 <= score.tempo_qpm <= 200 else rng.uniform(*tempo_range)
    spb = 60.0 / qpm
    parts, names = list(score.parts), list(score.part_names)
    quarters = score.quarters
    if style in ("pop", "rock", "electronic") and quarters * spb < 0.6 * max_seconds:
        times = max(1, int(rng.uniform(0.6, 1.0) * max_seconds // (quarters * spb)))
        quarters_one = np.ceil(quarters / bar) * bar
        parts, quarters = _tile(parts, quarters_one, times), quarters_one * times
    cap = min(quarters * spb, max_seconds)
    n_bars = int(np.ceil(quarters / bar))
    transpose = int(rng.integers(-3, 4))
    chords = bar_chords(parts, bar, n_bars)
    arranger = _Arranger(presets, split, style, rng)
    jitter = 0.0015 if style == "electronic" else 0.006

    def perform(part: np.ndarray, legato: float) -> np.ndarray:
        return _perform(part, spb, bar, rng, legato, transpose, cap, jitter)

    source = score.source
    if style in ("classical", "folk"):
        choir = rng.random() < p_choir
        singers = choir and rng.random() < 0.6
        if len(parts) == 1:
            bass, pad = _accompaniment(chords, bar)
            parts, names = [*parts, bass, pad], [*names, "generated bass", "generated chords"]
        order = np.argsort([-np.median(p[:, 2]) for p in parts[: len(score.parts)]])
        for k, part in enumerate(parts):
            median = float(np.median(part[:, 2]))
            rank = int(np.nonzero(order == k)[0][0]) if k < len(score.parts) else len(score.parts)
            pan = float(np.clip(rng.normal(0, 0.35) + (0.3 if rank % 2 else -0.3) * (len(parts) > 2), -0.8, 0.8))
            lead = k == 0 and len(score.parts) == 1
            gain = float(rng.uniform(-3, 0) if lead else rng.uniform(-9, -2))
            label = f"{names[k]} ({source})"
            if names[k] == "generated chords":
                arranger.fluid(arranger.preset(PALETTES["pad"]), perform(part, 0.98), label, gain, pan)
            elif (singers and k < len(score.parts)) or (lead and rng.random() < SUNG[style]):
                arranger.singer(perform(part, 0.97), label, gain, pan)
            elif choir or (len(parts) > 1 and k < len(score.parts) and rng.random() < 0.12):
                arranger.fluid(arranger.preset(PALETTES["voice"]), perform(part, 0.98), label, gain, pan)
            else:
                palette = PALETTES["high" if median >= 65 else "mid" if median >= 52 else "low"]
                instrument = arranger.preset(palette)
                legato = 0.98 if INSTRUMENTS[instrument][1] in ("vocals", "bowed_strings", "wind", "other_keys") \
                    else rng.uniform(0.8, 0.95)
                arranger.fluid(instrument, perform(part, legato), label, gain, pan)
        drums_chance = p_drums if style == "folk" else 0.15
    else:
        top = int(np.argmax([np.median(p[:, 2]) for p in parts]))
        melody = parts[top]
        melody = melody[np.r_[True, np.diff(melody[:, 0]) > 1e-6]]  # one voice: drop chord tones
        arranger.melody(perform(melody, 0.95), PALETTES["lead"], f"{names[top]} ({source})",
                        float(rng.uniform(-2, 0)))
        label = f"generated from the harmony of {source}"
        if style == "pop":
            arranger.fluid(arranger.preset(PALETTES["pop_keys"]), perform(_pattern_part(chords, bar, "pad"), 0.98),
                           label, float(rng.uniform(-10, -5)), float(rng.uniform(-0.5, 0.5)))
            if rng.random() < 0.5:
                arranger.synth("pad", perform(_pattern_part(chords, bar, "pad"), 0.98), label,
                               float(rng.uniform(-14, -8)), 0.0)
            bass = perform(_accompaniment(chords, bar)[0], 0.9)
            if rng.random() < 0.35:
                arranger.synth("bass", bass, label, float(rng.uniform(-6, -2)), 0.0)
            else:
                arranger.fluid(arranger.preset(PALETTES["pop_bass"]), bass, label, float(rng.uniform(-6, -2)), 0.0)
        elif style == "rock":
            side = float(rng.uniform(0.55, 0.85))
            for pan in (-side, side):
                arranger.fluid(arranger.preset(PALETTES["rock_guitar"]),
                               perform(_pattern_part(chords, bar, "power"), 0.9), label,
                               float(rng.uniform(-8, -4)), pan)
            arranger.fluid(arranger.preset(PALETTES["pop_bass"]), perform(_pattern_part(chords, bar, "bass8"), 0.9),
                           label, float(rng.uniform(-6, -2)), 0.0)
            if rng.random() < 0.3:
                arranger.fluid(arranger.preset(("drawbar_organ", "piano", "electric_piano")),
                               perform(_pattern_part(chords, bar, "pad"), 0.98), label, float(rng.uniform(-14, -8)),
                               float(rng.uniform(-0.4, 0.4)))
        else:  # electronic
            arranger.synth("pad", perform(_pattern_part(chords, bar, "pad"), 0.99), label,
                           float(rng.uniform(-12, -6)), 0.0)
            arranger.synth("bass", perform(_pattern_part(chords, bar, "bass8"), 0.8), label,
                           float(rng.uniform(-5, -1)), 0.0)
            if rng.random() < 0.6:
                arranger.synth("arp", perform(_pattern_part(chords, bar, "arp"), 0.8), label,
                               float(rng.uniform(-14, -8)), float(rng.uniform(-0.4, 0.4)))
            if rng.random() < 0.5:
                fx = draw_stem_fx("synth", style, False, rng)
                arranger.stems.append(StemPlan(arranger._name("other", "noise_riser"), "other",
                                               "white-noise risers", float(rng.uniform(-16, -8)), 0.0, fx,
                                               riser_bars=int(rng.choice([2, 4]))))
            usable = loops() if split in STRUM_SPLITS else []
            if usable and rng.random() < 0.6:
                path = usable[int(rng.integers(len(usable)))]
                rate = LOOP_BEATS[path.stem] * spb / (loop_audio(path).shape[1] / SAMPLE_RATE)
                fx = draw_stem_fx("percussion", style, False, rng)
                arranger.stems.append(StemPlan(arranger._name("percussion", path.stem), "percussion",
                                               f"Sonic Pi {path.stem}", float(rng.uniform(-12, -5)), 0.0, fx,
                                               loop=str(path), loop_rate=float(rate)))
        drums_chance = 0.95
    kit = None
    if kits and rng.random() < drums_chance:
        electronic = [k for k in kits if k in ELECTRONIC_KITS]
        acoustic = [k for k in kits if k not in ELECTRONIC_KITS] or kits
        pool = electronic if style == "electronic" and electronic else acoustic if style != "pop" else kits
        kit = str(rng.choice(pool))
        arranger.drums(_drum_hits(n_bars, bar, spb, rng, cap, style), kit, float(rng.uniform(-4, 0)))
    if style in ("folk", "pop") and rng.random() < p_strums and split in STRUM_SPLITS:
        strums = _strum_times(chords, bar, spb, transpose, rng, cap)
        fx = draw_stem_fx("guitar", style, False, rng)
        arranger.stems.append(StemPlan(arranger._name("guitar", "acoustic_strums"), "guitar",
                                       "belofilms guitar strums", float(rng.uniform(-8, -2)),
                                       float(rng.choice([-0.5, 0.5])), fx, strums=strums))
    return SongPlan(song_id, split, score, style, cap + 2.0, float(qpm), bar * spb, transpose, kit,
                    draw_bus_fx(style, rng), seed, arranger.stems)


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


def _render_loop(stem: StemPlan, length: int, bar_seconds: float, rng: np.random.Generator) -> np.ndarray:
    """The loop at the song's tempo (resampled by ``loop_rate``), repeated, silent in a quarter of the
    8-bar sections."""
    from apollo_restore.audio import resample

    audio = resample(loop_audio(Path(stem.loop)), round(SAMPLE_RATE * stem.loop_rate), SAMPLE_RATE)
    out = np.zeros((2, length), np.float32)
    section = round(8 * bar_seconds * SAMPLE_RATE)
    for at in range(0, length, audio.shape[1]):
        if rng.random() < 0.25 if at % max(section, 1) < audio.shape[1] else False:
            continue
        _place(out, audio, at, 1.0)
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


def render_stem(stem: StemPlan, plan: SongPlan, renderer, rng: np.random.Generator) -> np.ndarray:
    """The dry source of one stem, float32 ``[2, samples]``."""
    length = round(plan.seconds * SAMPLE_RATE)
    if stem.singer is not None:
        return sing(stem.singer, stem.notes, plan.seconds, rng)
    if stem.patch is not None:
        return render_synth(stem.patch, stem.notes, plan.seconds, plan.bar_seconds, rng)
    if stem.notes is not None:
        return renderer.render(stem.program, stem.notes, plan.seconds)
    if stem.hits:
        return _render_drums(stem, plan.kit, length, rng)
    if stem.loop:
        return _render_loop(stem, length, plan.bar_seconds, rng)
    if stem.riser_bars:
        return noise_riser(plan.seconds, plan.bar_seconds, stem.riser_bars, rng)
    return _render_strums(stem, length, rng)


def render_song(plan: SongPlan, renderer) -> tuple[dict[str, np.ndarray], float]:
    """Render a plan with a :class:`FluidRenderer`: ``{stem name: float32 [2, samples]}`` (the stems sum to
    the mastered song) and the song's integrated loudness (LUFS)."""
    from scipy import fft

    rng = np.random.default_rng([plan.seed, 1])
    length = round(plan.seconds * SAMPLE_RATE)
    room, size = None, 0
    if plan.bus.reverb == "room":
        ir = room_impulse(plan.bus.rt60, plan.bus.predelay, rng)
        size = fft.next_fast_len(length + ir.shape[1], real=True)
        room = fft.rfft(ir.astype(np.float32), size, axis=1)  # [2, bins] complex64, shared by every stem
    stems = {}
    for stem in plan.stems:
        dry = render_stem(stem, plan, renderer, rng)
        peak = float(np.abs(dry).max())
        if peak < 1e-6:
            continue
        wet = process_stem(dry / peak, stem.fx, rng)
        peak = float(np.abs(wet).max())
        if not np.isfinite(peak) or peak < 1e-6:
            continue
        wet = _pan(wet / peak, stem.pan)
        if stem.fx.reverb_send > 0:
            wet = wet + stem.fx.reverb_send * reverb(wet, plan.bus, room, size)
        stems[stem.name] = (wet * np.float32(10 ** (stem.gain_db / 20))).astype(np.float32)
    if not stems:
        return {}, float("-inf")
    mix = sum(stems.values())
    gain, loudness = master_gain(mix, plan.bus)
    stems = {name: audio * gain for name, audio in stems.items()}
    peak = max(float(np.abs(s).max()) for s in stems.values())  # a stem may exceed the mix's ceiling
    scale = min(1.0, 0.999 / peak)
    if scale < 1.0:
        loudness += 20 * np.log10(scale)
    return {name: (audio * np.float32(scale)).astype(np.float32) for name, audio in stems.items()}, loudness
