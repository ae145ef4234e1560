"""The human view of a run: an HTML page of per-language tables and plots."""
