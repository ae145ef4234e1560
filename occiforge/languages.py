"""The language table: the one place that knows which languages exist.

Every stage looks languages up here, so adding a language (Ukrainian, Catalan, Basque...) is
one `Language(...)` entry in `_TABLE` (or `register()` at run time) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from occiforge.errors import UserError


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, used in recipes and file names
    iso3: str  # ISO 639-3, for FLORES/GlotLID-style data
    script: str  # ISO 15924
    name: str
    native: str
    eu: bool = True  # official EU language

    @property
    def flores(self) -> str:
        return f"{self.iso3}_{self.script}"


_TABLE: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("bg", "bul", "Cyrl", "Bulgarian", "български"),
        Language("cs", "ces", "Latn", "Czech", "čeština"),
        Language("da", "dan", "Latn", "Danish", "dansk"),
        Language("de", "deu", "Latn", "German", "Deutsch"),
        Language("el", "ell", "Grek", "Greek", "ελληνικά"),
        Language("en", "eng", "Latn", "English", "English"),
        Language("es", "spa", "Latn", "Spanish", "español"),
        Language("et", "est", "Latn", "Estonian", "eesti"),
        Language("fi", "fin", "Latn", "Finnish", "suomi"),
        Language("fr", "fra", "Latn", "French", "français"),
        Language("ga", "gle", "Latn", "Irish", "Gaeilge"),
        Language("hr", "hrv", "Latn", "Croatian", "hrvatski"),
        Language("hu", "hun", "Latn", "Hungarian", "magyar"),
        Language("it", "ita", "Latn", "Italian", "italiano"),
        Language("lt", "lit", "Latn", "Lithuanian", "lietuvių"),
        Language("lv", "lvs", "Latn", "Latvian", "latviešu"),
        Language("mt", "mlt", "Latn", "Maltese", "Malti"),
        Language("nl", "nld", "Latn", "Dutch", "Nederlands"),
        Language("pl", "pol", "Latn", "Polish", "polski"),
        Language("pt", "por", "Latn", "Portuguese", "português"),
        Language("ro", "ron", "Latn", "Romanian", "română"),
        Language("sk", "slk", "Latn", "Slovak", "slovenčina"),
        Language("sl", "slv", "Latn", "Slovenian", "slovenščina"),
        Language("sv", "swe", "Latn", "Swedish", "svenska"),
    ]
}

EU_LANGUAGES: tuple[str, ...] = tuple(sorted(c for c, lang in _TABLE.items() if lang.eu))


def register(lang: Language) -> None:
    """Add a language (or replace one) for this process, e.g. from a plugin or a notebook."""
    _TABLE[lang.code] = lang


def get(code: str) -> Language:
    try:
        return _TABLE[code]
    except KeyError:
        raise UserError(f"unknown language code {code!r} (known: {', '.join(sorted(_TABLE))})") from None


def is_known(code: str) -> bool:
    return code in _TABLE


def all_codes() -> list[str]:
    return sorted(_TABLE)
