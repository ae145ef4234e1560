"""Prompt words per language: the one table every task template reads its words from.

A template asks for a word by key ("question", "answer", ...) and a prompt language: "en"
poses every task in English (as Occiglot and the Okapi tasks did), "native" in the items' own
language. Adding a language is one row here (and one in `occiforge/languages.py`).
The xcopa connectors for et and it are lm-evaluation-harness's, so `native` xcopa matches it.
"""

from __future__ import annotations

from typing import Literal

PromptLanguage = Literal["en", "native"]

KEYS: tuple[str, ...] = ("question", "answer", "passage", "topic", "because", "therefore")

# lang -> (question, answer, passage, topic, because, therefore)
_ROWS: dict[str, tuple[str, str, str, str, str, str]] = {
    "bg": ("Въпрос", "Отговор", "Текст", "Тема", "защото", "следователно"),
    "cs": ("Otázka", "Odpověď", "Text", "Téma", "protože", "proto"),
    "da": ("Spørgsmål", "Svar", "Tekst", "Emne", "fordi", "derfor"),
    "de": ("Frage", "Antwort", "Text", "Thema", "weil", "daher"),
    "el": ("Ερώτηση", "Απάντηση", "Κείμενο", "Θέμα", "επειδή", "επομένως"),
    "en": ("Question", "Answer", "Passage", "Topic", "because", "therefore"),
    "es": ("Pregunta", "Respuesta", "Pasaje", "Tema", "porque", "por lo tanto"),
    "et": ("Küsimus", "Vastus", "Tekst", "Teema", "sest", "seetõttu"),
    "fi": ("Kysymys", "Vastaus", "Teksti", "Aihe", "koska", "siksi"),
    "fr": ("Question", "Réponse", "Passage", "Sujet", "car", "donc"),
    "ga": ("Ceist", "Freagra", "Sliocht", "Ábhar", "mar", "dá bhrí sin"),
    "hr": ("Pitanje", "Odgovor", "Tekst", "Tema", "jer", "stoga"),
    "hu": ("Kérdés", "Válasz", "Szöveg", "Téma", "mert", "ezért"),
    "it": ("Domanda", "Risposta", "Passaggio", "Argomento", "perché", "quindi"),
    "lt": ("Klausimas", "Atsakymas", "Tekstas", "Tema", "nes", "todėl"),
    "lv": ("Jautājums", "Atbilde", "Teksts", "Tēma", "jo", "tāpēc"),
    "mt": ("Mistoqsija", "Tweġiba", "Silta", "Suġġett", "għax", "għalhekk"),
    "nl": ("Vraag", "Antwoord", "Passage", "Onderwerp", "omdat", "daarom"),
    "pl": ("Pytanie", "Odpowiedź", "Tekst", "Temat", "ponieważ", "dlatego"),
    "pt": ("Pergunta", "Resposta", "Passagem", "Tema", "porque", "portanto"),
    "ro": ("Întrebare", "Răspuns", "Pasaj", "Subiect", "pentru că", "prin urmare"),
    "sk": ("Otázka", "Odpoveď", "Text", "Téma", "pretože", "preto"),
    "sl": ("Vprašanje", "Odgovor", "Besedilo", "Tema", "ker", "zato"),
    "sv": ("Fråga", "Svar", "Text", "Ämne", "eftersom", "därför"),
}

PROMPT_WORDS: dict[str, dict[str, str]] = {lang: dict(zip(KEYS, row, strict=True)) for lang, row in _ROWS.items()}


def register(lang: str, words: dict[str, str]) -> None:
    """Add or replace a language's prompt words (every key in KEYS is required)."""
    missing = [k for k in KEYS if not words.get(k)]
    if missing:
        raise ValueError(f"prompt words for {lang!r} lack {missing}")
    PROMPT_WORDS[lang] = {k: words[k] for k in KEYS}


def words(lang: str, prompt: PromptLanguage = "en") -> dict[str, str]:
    """The prompt words to pose a task in `lang` with: English ones, or the language's own."""
    if prompt == "en":
        return PROMPT_WORDS["en"]
    if lang not in PROMPT_WORDS:
        raise KeyError(f"no prompt words for language {lang!r}; add a row to occiforge/eval/prompts.py")
    return PROMPT_WORDS[lang]
