"""The `tokenizer:` section: a trained or pretrained tokenizer and its extension."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from occiforge.recipe.base import Strict, _check_langs


class TokenizerExtendConfig(Strict):
    """Append tokens learned on target-language text to `tokenizer.pretrained`; old ids stay put."""

    languages: list[str] | Literal["auto"] = "auto"  # auto: run languages whose base fertility > threshold
    threshold: float = Field(2.0, gt=0)  # Occiglot's rule: keep the base tokenizer where fertility <= 2.0
    new_tokens: int = Field(8000, ge=1)  # one union extension shared by every target language
    min_frequency: int = Field(2, ge=1)
    # the embedding rows of the new tokens are each model's choice: models.<key>.embedding_init

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: list[str] | str) -> list[str] | str:
        return v if isinstance(v, str) else _check_langs(v) or []


class TokenizerConfig(Strict):
    kind: Literal["bpe", "unigram"] = "bpe"
    pretrained: str | None = None  # tokenizer.json, HF folder or hub id: use it instead of training
    vocab_size: int = Field(8192, ge=300)
    min_frequency: int = Field(2, ge=1)
    sampling_alpha: float = Field(0.5, ge=0.0, le=1.0)  # share_l ∝ size_l ** alpha
    # parity: start from chars, then raise languages whose parity on `parallel` is above parity_target
    balance_by: Literal["bytes", "chars", "parity"] = "chars"
    max_bytes: int = Field(200_000_000, ge=1)  # training sample budget
    languages: list[str] | None = None
    parallel: str | None = None  # folder of line-aligned <lang>.txt incl. en.txt: parity in the report
    parity_rounds: int = Field(6, ge=1)  # balance_by: parity trains at most this many times
    parity_target: float = Field(1.3, ge=1.0)  # ... and stops once every language is at or below this
    extend: TokenizerExtendConfig | None = None

    _v = field_validator("languages")(_check_langs)

    @model_validator(mode="after")
    def _needs(self) -> TokenizerConfig:
        if self.extend is not None and not self.pretrained:
            raise ValueError("extend needs 'pretrained' (the tokenizer to extend)")
        if self.balance_by == "parity" and not self.parallel:
            raise ValueError("balance_by: parity needs 'parallel' (a folder of aligned <lang>.txt files)")
        return self
