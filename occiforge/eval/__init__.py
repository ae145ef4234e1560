"""Evaluation: byte-normalised perplexity (bits per byte) and, later, task suites, per language."""
