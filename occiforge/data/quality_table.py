"""One table of per-language quality settings for the 24 EU languages.

Per language: Gopher stop words (a document needs at least two of them), the average word
length bounds, sentence-final characters (FineWeb/C4 line rules), and cookie/policy phrases
(a line containing one is boilerplate). Word-length bounds were set from `../shared/data/mono`
(average word length per document, p0.5-p99.5, widened by one character): Gopher's English
3-10 would drop Finnish, Estonian and Hungarian prose, whose words are longer.
A language added in a recipe falls back to `DEFAULT` (English-like bounds, no stop words:
the stop-word rule is then off for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LangQuality:
    stop_words: tuple[str, ...] = ()
    min_avg_word: float = 3.0
    max_avg_word: float = 10.0
    stop_chars: tuple[str, ...] = (".", "'", '"', "!", "?", ":", ";", "…", "»", "”", ")")
    cookie_phrases: tuple[str, ...] = field(default_factory=tuple)


_EN_COOKIES = ("we use cookies", "accept cookies", "cookie policy", "cookie settings", "privacy policy", "terms of use",
               "terms and conditions", "all rights reserved")


def _q(stop: str, cookies: str, lo: float = 3.0, hi: float = 10.0, extra_stop: tuple[str, ...] = ()) -> LangQuality:
    base = LangQuality()
    return LangQuality(tuple(stop.split()), lo, hi, base.stop_chars + extra_stop,
                       tuple(p.strip().lower() for p in cookies.split("|") if p.strip()) + _EN_COOKIES)


TABLE: dict[str, LangQuality] = {
    "bg": _q("и в на е се да от за с че не", "бисквитки|политика за поверителност|общи условия|всички права запазени"),
    "cs": _q("a v se na je že s z do o k to", "soubory cookie|zásady ochrany osobních údajů|podmínky použití|všechna práva vyhrazena"),
    "da": _q("og i at er det en til på af den med for", "bruger cookies|cookiepolitik|privatlivspolitik|alle rettigheder forbeholdes", hi=11.0),
    "de": _q("der die und in den von zu das mit sich des ist nicht ein", "verwendet cookies|cookie-richtlinie|datenschutzerklärung|nutzungsbedingungen|alle rechte vorbehalten", hi=12.0),
    "el": _q("και το η της του να στο με για τα που σε", "χρησιμοποιεί cookies|χρησιμοποιούμε cookies|πολιτική απορρήτου|όροι χρήσης|με επιφύλαξη παντός δικαιώματος", hi=11.0, extra_stop=(";",)),
    "en": _q("the be to of and that have with a in is", ""),
    "es": _q("de la que el en y a los se del las un por con", "utilizamos cookies|política de cookies|política de privacidad|aviso legal|todos los derechos reservados"),
    "et": _q("ja on et ei see ka oli kui ta mis ning aga", "küpsiseid|küpsiste|privaatsuspoliitika|kasutustingimused|kõik õigused kaitstud", hi=13.0),
    "fi": _q("ja on ei se että oli hän mutta kun myös niin tai", "evästeitä|evästekäytäntö|tietosuojaseloste|käyttöehdot|kaikki oikeudet pidätetään", hi=14.0),
    "fr": _q("de la le et les des en un une du est que pour dans", "utilise des cookies|utilisons des cookies|politique de confidentialité|mentions légales|tous droits réservés"),
    "ga": _q("an na agus ar a i is le go de don sa", "fianáin|polasaí príobháideachta|téarmaí úsáide|gach ceart ar cosaint"),
    "hr": _q("i je u se na da za su od a s ne", "kolačiće|kolačića|pravila privatnosti|uvjeti korištenja|sva prava pridržana", hi=11.0),
    "hu": _q("a az és hogy nem is egy van meg de ez csak", "sütiket|cookie-kat|adatvédelmi|felhasználási feltételek|minden jog fenntartva", hi=13.0),
    "it": _q("di e il la che in a per un è del non le", "utilizza cookie|utilizziamo cookie|cookie policy|informativa sulla privacy|tutti i diritti riservati"),
    "lt": _q("ir į kad yra su iš kaip bet tai o ar jo", "slapukus|slapukų|privatumo politika|naudojimo sąlygos|visos teisės saugomos", hi=12.0),
    "lv": _q("un ir ar par no uz kas ka arī to bet lai", "sīkdatnes|sīkdatņu|privātuma politika|lietošanas noteikumi|visas tiesības aizsargātas", hi=12.0),
    "mt": _q("il ta u li fil għal huwa ma dan biex minn kif", "nużaw il-cookies|politika tal-privatezza|termini u kundizzjonijiet|id-drittijiet kollha riservati", hi=11.0),
    "nl": _q("de het een en van in is dat op te voor met niet", "gebruikt cookies|cookiebeleid|privacybeleid|algemene voorwaarden|alle rechten voorbehouden", hi=11.0),
    "pl": _q("i w na z się nie do to że jest o jak", "plików cookie|pliki cookie|polityka prywatności|regulamin|wszelkie prawa zastrzeżone", hi=11.0),
    "pt": _q("de a o que e do da em um para é com não", "utilizamos cookies|política de cookies|política de privacidade|termos de uso|todos os direitos reservados"),
    "ro": _q("și în de la a cu nu pe din care se că", "folosim cookie|politica de cookie|politica de confidențialitate|termeni și condiții|toate drepturile rezervate", hi=11.0),
    "sk": _q("a v sa na je že s z do o k to", "súbory cookie|ochrana osobných údajov|podmienky používania|všetky práva vyhradené", hi=11.0),
    "sl": _q("in je v se na da za so ki z ne pa", "piškotke|piškotkov|politika zasebnosti|pogoji uporabe|vse pravice pridržane", hi=11.0),
    "sv": _q("och i att det som en på är av för med till", "använder cookies|använder kakor|integritetspolicy|användarvillkor|alla rättigheter förbehållna", hi=11.0),
}
DEFAULT = LangQuality(cookie_phrases=_EN_COOKIES)


def settings(lang: str) -> LangQuality:
    return TABLE.get(lang, DEFAULT)
