"""Evaluation per language: bits per byte (bpb), multiple choice scored as lm-eval scores it (scorer,
tasks, prompts, hub, items, metrics), generation with chrF (generate), leaderboards, lm-eval export."""
