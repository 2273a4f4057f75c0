# Set-up and everyday commands. Every target installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install install-dev demo test lint data-deps bench

# torch first: a pinned CPU build when none is installed (a bare `torch` requirement would pull a multi-GB CUDA build)
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e .

install-dev: install
	$(PIP) install -e '.[all]'
	@command -v lame >/dev/null && command -v ffmpeg >/dev/null && command -v g++ >/dev/null || \
	  (command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq --no-install-recommends lame ffmpeg g++) \
	  || echo "note: lame/ffmpeg/g++ not installed; the real-encoder tests fail under CI=1 and are skipped otherwise"
	@sh scripts/install-data-deps.sh || \
	  echo "note: Debian data packages not installed (needs root, apt-get): 3 generator tests will be skipped"

# README command 1: restore the shipped demo clip -> restored.wav + restored.png (before/after spectrogram)
demo: install
	apollo restore --demo -o restored.wav --spectrogram restored.png

# README command 2: install everything (Python extras, lame/ffmpeg, the data packages) and run the whole test suite
test: install-dev lint
	$(PYTHON) -m pytest

# ruff over every Python file of the repository, shellcheck over its shell scripts (both from the dev extra)
lint:
	$(PYTHON) -m ruff check .
	shellcheck scripts/*.sh

# Debian packages for `apollo make-data` (SoundFonts, recorded drum kits, guitars and loops); needs root (also
# run by install-dev, which goes on without them)
data-deps:
	sh scripts/install-data-deps.sh

bench: install
	apollo bench
