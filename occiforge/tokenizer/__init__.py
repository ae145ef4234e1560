"""Tokenizers: train (BPE/Unigram, per-language sampling), load, measure."""
