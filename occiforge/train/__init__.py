"""Training: token shards, mixture sampling, one loop for pre-training, CPT and SFT, checkpoints."""
