"""The language table: the one place that knows which languages exist.

Every stage looks languages up here, so adding a language (Ukrainian, Catalan, Basque...) is
one entry under `add_languages` in a recipe (registered by `recipe.validate_tree`), or one
`Language(...)` in `_TABLE` for a built-in, and nothing else. Each language carries the prompt
words the evaluation poses tasks with in that language (`prompt`, in the order of PROMPT_KEYS).
"""

from __future__ import annotations

from dataclasses import dataclass

from occiforge.errors import UserError


PROMPT_KEYS: tuple[str, ...] = ("question", "answer", "passage", "topic", "because", "therefore")


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, used in recipes and file names
    iso3: str  # ISO 639-3, for FLORES/GlotLID-style data
    script: str  # ISO 15924
    name: str
    native: str
    eu: bool = True  # official EU language
    prompt: tuple[str, ...] | None = None  # prompt words, PROMPT_KEYS order; None: English ones only

    @property
    def flores(self) -> str:
        return f"{self.iso3}_{self.script}"


_TABLE: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("bg", "bul", "Cyrl", "Bulgarian", "български", prompt=("Въпрос", "Отговор", "Текст", "Тема", "защото", "следователно")),
        Language("cs", "ces", "Latn", "Czech", "čeština", prompt=("Otázka", "Odpověď", "Text", "Téma", "protože", "proto")),
        Language("da", "dan", "Latn", "Danish", "dansk", prompt=("Spørgsmål", "Svar", "Tekst", "Emne", "fordi", "derfor")),
        Language("de", "deu", "Latn", "German", "Deutsch", prompt=("Frage", "Antwort", "Text", "Thema", "weil", "daher")),
        Language("el", "ell", "Grek", "Greek", "ελληνικά", prompt=("Ερώτηση", "Απάντηση", "Κείμενο", "Θέμα", "επειδή", "επομένως")),
        Language("en", "eng", "Latn", "English", "English", prompt=("Question", "Answer", "Passage", "Topic", "because", "therefore")),
        Language("es", "spa", "Latn", "Spanish", "español", prompt=("Pregunta", "Respuesta", "Pasaje", "Tema", "porque", "por lo tanto")),
        Language("et", "est", "Latn", "Estonian", "eesti", prompt=("Küsimus", "Vastus", "Tekst", "Teema", "sest", "seetõttu")),
        Language("fi", "fin", "Latn", "Finnish", "suomi", prompt=("Kysymys", "Vastaus", "Teksti", "Aihe", "koska", "siksi")),
        Language("fr", "fra", "Latn", "French", "français", prompt=("Question", "Réponse", "Passage", "Sujet", "car", "donc")),
        Language("ga", "gle", "Latn", "Irish", "Gaeilge", prompt=("Ceist", "Freagra", "Sliocht", "Ábhar", "mar", "dá bhrí sin")),
        Language("hr", "hrv", "Latn", "Croatian", "hrvatski", prompt=("Pitanje", "Odgovor", "Tekst", "Tema", "jer", "stoga")),
        Language("hu", "hun", "Latn", "Hungarian", "magyar", prompt=("Kérdés", "Válasz", "Szöveg", "Téma", "mert", "ezért")),
        Language("it", "ita", "Latn", "Italian", "italiano", prompt=("Domanda", "Risposta", "Passaggio", "Argomento", "perché", "quindi")),
        Language("lt", "lit", "Latn", "Lithuanian", "lietuvių", prompt=("Klausimas", "Atsakymas", "Tekstas", "Tema", "nes", "todėl")),
        Language("lv", "lvs", "Latn", "Latvian", "latviešu", prompt=("Jautājums", "Atbilde", "Teksts", "Tēma", "jo", "tāpēc")),
        Language("mt", "mlt", "Latn", "Maltese", "Malti", prompt=("Mistoqsija", "Tweġiba", "Silta", "Suġġett", "għax", "għalhekk")),
        Language("nl", "nld", "Latn", "Dutch", "Nederlands", prompt=("Vraag", "Antwoord", "Passage", "Onderwerp", "omdat", "daarom")),
        Language("pl", "pol", "Latn", "Polish", "polski", prompt=("Pytanie", "Odpowiedź", "Tekst", "Temat", "ponieważ", "dlatego")),
        Language("pt", "por", "Latn", "Portuguese", "português", prompt=("Pergunta", "Resposta", "Passagem", "Tema", "porque", "portanto")),
        Language("ro", "ron", "Latn", "Romanian", "română", prompt=("Întrebare", "Răspuns", "Pasaj", "Subiect", "pentru că", "prin urmare")),
        Language("sk", "slk", "Latn", "Slovak", "slovenčina", prompt=("Otázka", "Odpoveď", "Text", "Téma", "pretože", "preto")),
        Language("sl", "slv", "Latn", "Slovenian", "slovenščina", prompt=("Vprašanje", "Odgovor", "Besedilo", "Tema", "ker", "zato")),
        Language("sv", "swe", "Latn", "Swedish", "svenska", prompt=("Fråga", "Svar", "Text", "Ämne", "eftersom", "därför")),
    ]
}

EU_LANGUAGES: tuple[str, ...] = tuple(sorted(c for c, lang in _TABLE.items() if lang.eu))
_BUILTIN = frozenset(_TABLE)


def register(lang: Language) -> None:
    """Add a language for this process (a recipe's `add_languages`, a plugin, a notebook)."""
    if lang.code in _BUILTIN and _TABLE[lang.code] != lang:
        raise UserError(f"language {lang.code!r} is built in ({_TABLE[lang.code].name}) and cannot be redefined")
    if lang.prompt is not None and len(lang.prompt) != len(PROMPT_KEYS):
        raise UserError(f"language {lang.code!r}: prompt words must be {len(PROMPT_KEYS)} ({', '.join(PROMPT_KEYS)})")
    _TABLE[lang.code] = lang


def is_builtin(code: str) -> bool:
    return code in _BUILTIN


def prompt_words(code: str) -> dict[str, str] | None:
    """The prompt words of a language by key, or None where the table has none."""
    lang = _TABLE.get(code)
    return dict(zip(PROMPT_KEYS, lang.prompt, strict=True)) if lang and lang.prompt else None


def get(code: str) -> Language:
    try:
        return _TABLE[code]
    except KeyError:
        raise UserError(f"unknown language code {code!r} (known: {', '.join(sorted(_TABLE))})") from None


def is_known(code: str) -> bool:
    return code in _TABLE


def all_codes() -> list[str]:
    return sorted(_TABLE)
