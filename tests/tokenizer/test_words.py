"""The UD-style word splitter behind fertility."""

import pytest

from occiforge.tokenizer.words import split_words, word_spans


@pytest.mark.parametrize(("lang", "text", "words"), [
    ("en", "I don't think John's long-term plan works.",
     ["I", "do", "n't", "think", "John", "'s", "long", "-", "term", "plan", "works", "."]),
    ("fr", "L'homme d'État est là aujourd'hui.", ["L'", "homme", "d'", "État", "est", "là", "aujourd'hui", "."]),
    ("it", "Dell'uomo, l’arte.", ["Dell'", "uomo", ",", "l’", "arte", "."]),
    ("mt", "Il-kelb ta' Marija.", ["Il-", "kelb", "ta'", "Marija", "."]),
    ("de", "Die EU-Kommission zahlt 1.000,50 € (sofort)...", ["Die", "EU-Kommission", "zahlt", "1.000,50", "€", "(", "sofort", ")", "..."]),
    ("el", "Η Ελλάδα είναι χώρα· «ναι»", ["Η", "Ελλάδα", "είναι", "χώρα", "·", "«", "ναι", "»"]),
])
def test_split(lang: str, text: str, words: list[str]):
    assert split_words(text, lang) == words


def test_combining_marks_stay_in_the_word():
    decomposed = "e\u0301le\u0300ve"  # "élève" written with combining accents
    assert split_words(f"un {decomposed}", "fr") == ["un", decomposed]


def test_spans_cover_every_non_space_character():
    text = "Všetky ľudské bytosti sa rodia slobodné a sebe rovné, čo sa týka dôstojnosti."
    covered = {i for s, e in word_spans(text, "sk") for i in range(s, e)}
    assert covered == {i for i, ch in enumerate(text) if not ch.isspace()}
