"""Evaluation: metrics (SDR, SI-SNR, ViSQOL, LSD), Table II / Figure 2 reports, spectrograms, benchmarks."""
