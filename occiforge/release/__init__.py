"""The release stage: Hub-ready model folders with model cards, and their upload."""
