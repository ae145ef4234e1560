"""Mixture sampling of training windows, a pure function of (seed, step, rank).

Each sequence first draws its language from the mixture weights, then a random window of the
language's token stream. Because nothing is stateful, a resumed run draws exactly the batches
the interrupted run would have drawn, and ranks draw disjoint streams.
"""

from __future__ import annotations

import numpy as np
import torch

from occiforge.errors import UserError


class MixtureSampler:
    def __init__(self, streams: dict[str, np.ndarray], weights: dict[str, float], seq_len: int, seed: int):
        self.langs = [lang for lang, w in weights.items() if w > 0]
        total = sum(weights[lang] for lang in self.langs)
        self.probs = np.array([weights[lang] / total for lang in self.langs])
        self.streams = [streams[lang] for lang in self.langs]
        self.window = seq_len + 1  # inputs plus the shifted target
        self.seed = seed
        for lang, stream in zip(self.langs, self.streams):
            if len(stream) <= self.window:
                raise UserError(f"train: language {lang} has {len(stream)} tokens, fewer than one window of {self.window}")

    def batch(self, step: int, batch_size: int, rank: int = 0) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.seed, step, rank])
        which = rng.choice(len(self.langs), size=batch_size, p=self.probs)
        rows = []
        for i in which:
            stream = self.streams[i]
            start = int(rng.integers(0, len(stream) - self.window))
            rows.append(np.asarray(stream[start : start + self.window], dtype=np.int64))
        return torch.from_numpy(np.stack(rows)), [self.langs[i] for i in which]
