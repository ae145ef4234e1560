"""Per-language quality steps: the table covers the 24 languages, cookie lines, PII, Gopher in Maltese."""

from __future__ import annotations

from datatrove.data import Document

from occiforge.data.quality import CookieLineRemover, Normalizer, PerLanguage, PIIMasker
from occiforge.data.quality_table import TABLE
from occiforge.languages import all_codes


def _doc(text: str, lang: str) -> Document:
    return Document(text=text, id="x", metadata={"language": lang})


def test_table_has_every_eu_language_with_stop_words_and_cookie_phrases():
    assert set(TABLE) == set(all_codes()) and len(TABLE) == 24
    assert all(len(q.stop_words) >= 8 and len(q.cookie_phrases) > 4 for q in TABLE.values())


def test_cookie_lines_are_removed_in_the_documents_language():
    text = "Die Stadt liegt am Fluss.\nDiese Website verwendet Cookies, um Ihr Erlebnis zu verbessern.\nDatenschutzerklärung\nSie hat einen Hafen."
    (doc,) = CookieLineRemover().run(iter([_doc(text, "de")]))
    assert doc.text == "Die Stadt liegt am Fluss.\nSie hat einen Hafen."


def test_pii_masks_email_ip_and_phone_but_not_years_or_prices():
    masker = PIIMasker()
    out = masker.mask("Mail anna.kovacs@example.hu or call +36 1 234 5678, server 84.2.44.17, in 2019 it cost 1 250 000 Ft.")
    assert "anna.kovacs" not in out and "234 5678" not in out and "84.2.44.17" not in out
    assert "2019" in out and "1 250 000" in out


def test_normalizer_composes_and_cleans():
    (doc,) = Normalizer().run(iter([_doc("Cafe\u0301 \u200b\r\nzwei  \n\n\n\ndrei", "de")]))
    assert doc.text == "Café \nzwei\n\ndrei".replace(" \n", "\n")


def test_gopher_per_language_keeps_maltese_prose_and_drops_a_word_list():
    mt = ("Il-Gvern ħabbar li se jibni skola ġdida fil-belt, u l-ħidma se tibda s-sena d-dieħla. Il-ministru qal li "
          "l-proġett huwa importanti għall-familji taż-żona, għax it-tfal ma jkollhomx għalfejn jivvjaġġaw. "
          "Il-kunsill lokali laqa' l-aħbar b'sodisfazzjon u qal li dan huwa pass 'il quddiem għall-komunità kollha. "
          "Is-sindku żied jgħid li l-iskola se jkollha librerija, sala tal-isport u ġnien kbir fejn it-tfal jistgħu "
          "jilagħbu waqt il-brejk, u li l-kunsill se jaħdem mal-ġenituri biex it-triq ta' quddiemha ssir aktar sigura.")
    gopher = PerLanguage("gopher_quality")
    assert gopher.filter(_doc(mt, "mt")) is True
    ok, reason = gopher.filter(_doc(" ".join(["Rabat", "Mdina", "Birgu"] * 30), "mt"))
    assert ok is False and reason.startswith("gopher")
