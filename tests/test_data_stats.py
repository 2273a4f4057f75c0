"""High-band energy measure behind `make-data --report`."""

from __future__ import annotations

import numpy as np

from apollo_restore.data.stats import band_share_db

SR = 44100


def test_band_share_of_two_tones() -> None:
    t = np.arange(SR) / SR
    both = np.stack([np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 18000 * t)] * 2)
    assert abs(band_share_db(both, SR) - 10 * np.log10(0.5)) < 0.01  # half the energy is above 16 kHz
    quiet = np.sin(2 * np.pi * 1000 * t) + 0.01 * np.sin(2 * np.pi * 18000 * t)
    assert abs(band_share_db(quiet, SR) + 40.0) < 0.01
    low = np.sin(2 * np.pi * 1000 * t)[None]
    assert band_share_db(low, SR) < -150 and np.isfinite(band_share_db(np.zeros((2, SR)), SR))
