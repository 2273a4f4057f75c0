#!/usr/bin/env sh
# Debian/Ubuntu packages that `apollo make-data` renders with (run as root, or prefix with sudo).
#   libfluidsynth3 / fluidsynth   FluidSynth synthesiser, driven in-process through pyfluidsynth (LGPL-2.1)
#   fluid-soundfont-gm            FluidR3_GM.sf2, lossless General MIDI bank (MIT)
#   timgm6mb-soundfont            TimGM6mb.sf2, small lossless GM bank (GPL-2): the validation split's bank
#   musescore-general-soundfont-lossless  MuseScore_General_Full.sf2, lossless bank (MIT); held out for
#                                 the evaluation split so train and eval share no instrument bank
#   hydrogen-drumkits             real recorded acoustic drum kits (GPL/CC, per kit)
#   hydrogen-drumkits-effects     real recorded acoustic-guitar strums and effects (CC-BY-3.0)
# Optional: python packages `music21` and `pyfluidsynth` (pip install 'apollo-restore[data]').
set -eu
apt-get update
apt-get install -y --no-install-recommends \
    fluidsynth libfluidsynth3 \
    fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-lossless \
    hydrogen-drumkits hydrogen-drumkits-effects
