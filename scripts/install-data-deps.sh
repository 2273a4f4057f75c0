#!/usr/bin/env sh
# Debian/Ubuntu packages that `apollo make-data` renders with (run as root, or prefix with sudo).
#   libfluidsynth3 / fluidsynth   FluidSynth synthesiser, driven in-process through pyfluidsynth (LGPL-2.1)
#   fluid-soundfont-gm            FluidR3_GM.sf2, lossless General MIDI bank (MIT): training
#   musescore-general-soundfont-lossless  MuseScore_General_Full.sf2 (MIT); shares most samples with FluidR3,
#                                 so it is a second training bank
#   timgm6mb-soundfont            TimGM6mb.sf2, small lossless GM bank (GPL-2): the evaluation splits' bank
#   hydrogen-drumkits             real recorded acoustic and electronic drum kits (GPL/CC, per kit)
#   hydrogen-drumkits-effects     real recorded acoustic-guitar strums and effects (CC-BY-3.0)
#   avldrums.lv2-soundfont        AVL drum kits as SoundFonts (CC-BY-SA-3.0): Red Zeppelin (training),
#                                 Black Pearl (evaluation; the same recordings as Hydrogen's Black Pearl kit)
#   sonic-pi-samples              Sonic Pi one-shots and loops (CC0 / MIT per debian/copyright): training only;
#                                 the loops of the real-music evaluation set are never used
# Optional: python packages `music21`, `pyfluidsynth`, `pedalboard`, `pyloudnorm`, `numba`
# (pip install 'apollo-restore[data]').
# Installs only what is missing (nothing, and no apt-get update, when all are there); exits non-zero when it
# cannot (no apt-get, not root).
set -eu
packages="fluidsynth libfluidsynth3 fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-lossless
hydrogen-drumkits hydrogen-drumkits-effects avldrums.lv2-soundfont sonic-pi-samples"
missing=""
for package in $packages; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -z "$missing" ]; then
    echo "data packages: all installed"
    exit 0
fi
command -v apt-get >/dev/null || { echo "no apt-get here: install$missing by other means" >&2; exit 1; }
apt-get update
# shellcheck disable=SC2086  # one word per package
apt-get install -y --no-install-recommends $missing
