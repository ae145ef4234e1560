"""Mixture of European Experts: the `merge:`, `moe:` and `transfer:` sections (occiforge/experts)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from occiforge.recipe.base import Strict, _check_langs


class MergeEntry(Strict):
    """One merged model: its experts (model names of this run, or HF folders) merged tensor by tensor."""

    method: Literal["linear", "task_arithmetic", "ties"] = "linear"
    experts: list[str] = Field(min_length=2)
    base: str | None = None  # task_arithmetic, ties: default the experts' common init
    weights: list[float] | None = None  # one per expert; default 1.0 each
    density: float | None = Field(None, gt=0, le=1)  # ties: share of each delta kept (default 0.2); else 1.0
    scale: float = 1.0  # task_arithmetic, ties: factor on the merged delta (mergekit's `lambda`)
    normalize: bool | None = None  # divide by the summed weights; default as mergekit (linear, ties: yes)

    @model_validator(mode="after")
    def _consistent(self) -> MergeEntry:
        if self.weights is not None and len(self.weights) != len(self.experts):
            raise ValueError(f"weights: {len(self.weights)} given for {len(self.experts)} experts ({', '.join(self.experts)})")
        if self.method == "linear" and self.base is not None:
            raise ValueError("base: a linear merge has no base (use task_arithmetic or ties)")
        return self


class RouterConfig(Strict):
    """How a mixture routes: rows from language centroids, then optionally a brief training."""

    init: Literal["language", "random"] = "language"  # language: per-language hidden-state centroids
    scale: float = Field(4.0, gt=0)  # norm of each router row
    calibration_tokens: int = Field(8192, ge=16)  # per expert language, from its training text
    train: Literal["none", "router", "all"] = "none"  # router: all else frozen; all: the whole mixture
    steps: int = Field(100, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(4, ge=0)
    batch_size: int | None = Field(None, ge=1)  # default train.batch_size; rows cycle through the experts' languages
    distill: bool = True  # loss: KL to the expert of each row's language (else the LM loss on the text)
    language_loss: float = Field(0.3, ge=0)  # + this x cross-entropy of every router against the row's expert


class MoeEntry(Strict):
    """One mixture: each expert's MLP one expert per layer, the rest averaged or from the base."""

    experts: list[str] = Field(min_length=2)  # model names of this run, or HF folders
    languages: list[str] | None = None  # each expert's language; default each expert's bilingual target
    top_k: int = Field(2, ge=1)
    shared: Literal["average", "base"] = "average"  # attention, norms (and embeddings unless by_language)
    # by_language: each token's embedding row averaged over the experts weighted by its frequency in their languages
    embeddings: Literal["by_language", "shared"] = "by_language"
    base: str | None = None  # shared: base; default the experts' common init
    router: RouterConfig = RouterConfig()
    analysis_languages: list[str] | None = None  # routing shares on held-out text; default the experts' languages

    _v = field_validator("languages", "analysis_languages")(_check_langs)

    @model_validator(mode="after")
    def _consistent(self) -> MoeEntry:
        if self.top_k > len(self.experts):
            raise ValueError(f"top_k {self.top_k} is larger than the number of experts ({len(self.experts)}: "
                             f"{', '.join(self.experts)})")
        if self.languages is not None and len(self.languages) != len(self.experts):
            raise ValueError(f"languages: {len(self.languages)} given for {len(self.experts)} experts ({', '.join(self.experts)})")
        return self


class TransferConfig(Strict):
    """The transfer study: a bilingual entry's models (one per language, one base) scored on every language."""

    models: str  # a models.<key> entry with `targets` (use replay: 0 for pure monolingual continuation)
    groups: int | None = Field(None, ge=1)  # suggested expert groups; default about sqrt(languages)
    linkage: Literal["average", "complete", "single", "weighted"] = "average"
