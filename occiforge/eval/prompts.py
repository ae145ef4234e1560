"""Prompt words: what every task template reads its words from.

A template asks for a word by key ("question", "answer", ...) and a prompt language: "en"
poses every task in English (as Occiglot and the Okapi tasks did), "native" in the items' own
language. The words live with each language in `occiforge/languages.py` (a recipe's
`add_languages` entry brings its own). The xcopa connectors for et and it are
lm-evaluation-harness's, so `native` xcopa matches it.
"""

from __future__ import annotations

from typing import Literal

from occiforge import languages

PromptLanguage = Literal["en", "native"]
KEYS = languages.PROMPT_KEYS


def words(lang: str, prompt: PromptLanguage = "en") -> dict[str, str]:
    """The prompt words to pose a task in `lang` with: English ones, or the language's own."""
    found = languages.prompt_words("en" if prompt == "en" else lang)
    if found is None:
        raise KeyError(f"no prompt words for language {lang!r}; give them in the recipe (add_languages.*.prompt)")
    return found
