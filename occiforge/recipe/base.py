"""What every recipe section shares: strict models, language-code checks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import (
    BaseModel,
    ConfigDict,
)

from occiforge import languages

BUILTIN_DEMO = "builtin:demo"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def unknown_key(key: str, known: Iterable[str]) -> str:
    """'unknown key', with the known key it is most likely a typo of."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")


def _check_langs(codes: list[str] | None) -> list[str] | None:
    for code in codes or []:
        if not languages.is_known(code):
            raise ValueError(f"unknown language code {code!r}; add it under 'add_languages' (see README)")
    return codes
