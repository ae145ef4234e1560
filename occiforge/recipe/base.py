"""What every recipe section shares: strict models, language-code checks."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)

from occiforge import languages

BUILTIN_DEMO = "builtin:demo"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_langs(codes: list[str] | None) -> list[str] | None:
    for code in codes or []:
        if not languages.is_known(code):
            raise ValueError(f"unknown language code {code!r}; add it under 'add_languages' (see README)")
    return codes
