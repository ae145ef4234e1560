"""What every recipe section shares: strict models, language-code checks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationInfo,
    field_validator,
)

from occiforge import languages

BUILTIN_DEMO = "builtin:demo"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads true/false (YAML's yes/on too) as 1/0: `lr: true` would train at lr 1.0
        if info.field_name and _bool_as_number(value, cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not true/false")
        return value


def _bool_as_number(value: Any, ann: Any) -> bool:
    """Whether `value` holds true/false where `ann` wants a number (looking into lists, tuples, dicts)."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _bool_as_number(value, args[0])
    if origin in (Union, types.UnionType):
        if isinstance(value, bool) and any(a is bool or a is Any for a in args):
            return False
        return any(_bool_as_number(value, a) for a in args)
    if isinstance(value, bool):
        return ann in (int, float)
    if isinstance(value, dict) and origin is dict and args:
        return any(_bool_as_number(v, args[1]) for v in value.values())
    if isinstance(value, list) and origin in (list, tuple, set, frozenset) and args:
        each = args if origin is tuple and Ellipsis not in args else (args[0],) * len(value)
        return any(_bool_as_number(v, a) for v, a in zip(value, each))
    return False


def unknown_key(key: str, known: Iterable[str]) -> str:
    """'unknown key', with the known key it is most likely a typo of."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")


def _check_langs(codes: list[str] | None) -> list[str] | None:
    for code in codes or []:
        if not languages.is_known(code):
            raise ValueError(f"unknown language code {code!r}; add it under 'add_languages' (see README)")
    return codes
