"""The `apollo make-data` generator: scores, recorded samples, synth and sung voices, production, one song at a time."""
