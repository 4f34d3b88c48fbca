"""Realistic text for synthetic recognition data.

Words come from wordfreq (real frequencies of seven Latin-script languages), names, streets, cities, companies,
phone numbers, plates, e-mails and IBANs from Faker's locale data; dates, amounts, numbers and document codes are
generated here. Random character strings are a minority, so a recogniser learns the statistics of real documents
(letter pairs, capitalisation, digit groups, currency signs) instead of uniform noise.

Every sample is a pure function of the numpy Generator passed in (Faker is re-seeded from it per call), so a
renderer that seeds per (seed, index) gets the same text on every machine with the same package versions.
"""

from __future__ import annotations

import bisect
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..charset import Charset

if TYPE_CHECKING:
    from faker import Faker

T = TypeVar("T")
DEFAULT_KINDS: dict[str, float] = {
    "word": 0.36, "phrase": 0.12, "name": 0.06, "place": 0.06, "company": 0.03, "date": 0.07, "amount": 0.06,
    "number": 0.04, "code": 0.10, "random": 0.10,
}
DEFAULT_LANGUAGES: dict[str, float] = {"en": 0.55, "de": 0.1, "fr": 0.1, "es": 0.07, "it": 0.06, "pt": 0.05, "nl": 0.07}
_LOCALES = {"en": ("en_US", "en_GB"), "de": ("de_DE", "de_AT"), "fr": ("fr_FR",), "es": ("es_ES",),
            "it": ("it_IT",), "pt": ("pt_PT", "pt_BR"), "nl": ("nl_NL",)}
# Real frequency to the power 0.7: the 100 most common English words get ~15% of draws (~45% in running text), so
# common words stay common while the long tail, which a recogniser must also read, is still seen.
_FREQ_POWER = 0.7
_TOP_WORDS = {"en": 60000}
_TOP_WORDS_OTHER = 25000
_MAX_ATTEMPTS = 50
# Without a charset, random strings look like codes and serials: mostly letters and digits, some punctuation.
_RANDOM_ALPHABET = string.ascii_letters + 2 * string.digits + ".,-/:#()&+%*" + "äöüßéàç€£"
_MONTHS = {
    "en": "January February March April May June July August September October November December".split(),
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split(),
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split(),
}
_CURRENCIES = ("€", "$", "£", "EUR", "USD", "CHF", "¥", "GBP")
_UNITS = ("kg", "g", "ml", "l", "m", "cm", "mm", "km", "pcs", "Stk.", "h", "min", "%", "x", "m²", "°C")
_FIELD_LABELS = ("Total", "Subtotal", "VAT", "MwSt.", "TVA", "Qty", "Tel.", "Fax", "No.", "Nr.", "Ref.", "Date",
                 "Invoice", "Rechnung", "Facture", "Order", "Page", "Tax", "Amount", "Balance", "IVA")
_FAKER_CODES = ("phone_number", "postcode", "license_plate", "email", "free_email", "url", "iban", "isbn13",
                "ean13", "ipv4", "domain_name", "user_name")


@lru_cache(maxsize=16)
def _word_table(lang: str) -> tuple[tuple[str, ...], list[float]]:
    """The language's most frequent alphabetic words (apostrophes/hyphens inside allowed) and their cumulative
    weights; wordfreq's lists are grouped in buckets of equal frequency 10^(-i/100)."""
    # Imported on first use: training from label files or LMDB needs neither wordfreq (a 57 MB wheel) nor Faker.
    import wordfreq

    limit = _TOP_WORDS.get(lang, _TOP_WORDS_OTHER)
    words, weights = [], []
    for i, bucket in enumerate(wordfreq.get_frequency_list(lang, wordlist="best")):
        for word in bucket:
            if word.replace("'", "").replace("-", "").isalpha() and word[0].isalpha() and word[-1].isalpha():
                words.append(unicodedata.normalize("NFC", word))
                weights.append(10 ** (-i / 100 * _FREQ_POWER))
        if len(words) >= limit:
            break
    cdf = np.cumsum(weights[:limit])
    return tuple(words[:limit]), (cdf / cdf[-1]).tolist()  # a list: bisect on it is faster than np.searchsorted


@lru_cache(maxsize=16)
def _faker(locale: str) -> Faker:
    from faker import Faker

    # Unweighted choice: 3-5x faster (en_US names cost ~150 us weighted), and rare names are as useful to OCR.
    fake = Faker(locale, use_weighting=False)
    for provider in fake.get_providers():
        # it_IT lists its cities from a set, in an order that follows PYTHONHASHSEED (so differs per process): the
        # same city then came out of the same seed in one process only. Sorted, the uniform draw is reproducible.
        if isinstance(getattr(provider, "cities", None), list):
            provider.cities = sorted(provider.cities)
    return fake


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, size=n))


def _letters(rng: np.random.Generator, n: int) -> str:
    return "".join(string.ascii_uppercase[i] for i in rng.integers(0, 26, size=n))


def _group(number: str, sep: str) -> str:
    """1234567 -> 1,234,567 with ``sep``."""
    head = len(number) % 3 or 3
    return sep.join([number[:head]] + [number[i:i + 3] for i in range(head, len(number), 3)])


# Invoice, order, reference and account numbers as printed on documents.
_DOCUMENT_CODES: tuple[Callable[[np.random.Generator, str], str], ...] = (
    lambda rng, year: f"INV-{year}-{_digits(rng, 5)}",
    lambda rng, year: f"#{_digits(rng, int(rng.integers(3, 8)))}",
    lambda rng, year: f"{_letters(rng, 3)}{_digits(rng, 4)}",
    lambda rng, year: f"{_letters(rng, 2)}-{_digits(rng, 6)}",
    lambda rng, year: f"{_digits(rng, 3)}-{_digits(rng, 3)}-{_digits(rng, 4)}",
    lambda rng, year: f"No. {_digits(rng, 6)}",
    lambda rng, year: f"Nr. {_digits(rng, 5)}/{year[2:]}",
    lambda rng, year: f"{year}/{_digits(rng, 4)}",
    lambda rng, year: f"{_letters(rng, 1)}{_digits(rng, 2)}.{_digits(rng, 3)}",
    lambda rng, year: f"SKU {_letters(rng, 2)}{_digits(rng, 5)}",
    lambda rng, year: f"{_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)}",
    lambda rng, year: f"Ref: {_letters(rng, 2)}{_digits(rng, 7)}",
)


def _case(rng: np.random.Generator, text: str, upper: float = 0.08, title: float = 0.25) -> str:
    r = rng.random()
    if r < upper:
        return text.upper()
    if r < upper + title:
        return text[:1].upper() + text[1:]
    return text


class TextSampler:
    """Draws one word or short line per call; ``kinds`` and ``languages`` weight the sources (see DEFAULT_KINDS,
    DEFAULT_LANGUAGES).

    With ``charset`` every sample is restricted to it: accents are stripped or case folded when that makes the text
    fit, otherwise the sample is re-drawn; each of these lands in ``stats``. Lengths are in characters, inclusive.
    ``sample(rng)`` depends on ``rng`` only; without one it continues a stream seeded with ``seed``.
    """

    def __init__(self, seed: int = 0, charset: Charset | None = None, min_len: int = 1, max_len: int = 25,
                 kinds: Mapping[str, float] | None = None, languages: Mapping[str, float] | None = None) -> None:
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        kinds = dict(DEFAULT_KINDS if kinds is None else kinds)
        unknown = set(kinds) - set(DEFAULT_KINDS)
        if unknown or min(kinds.values(), default=0) < 0 or not sum(kinds.values()) > 0:
            raise ValueError(f"kinds must weight some of {', '.join(DEFAULT_KINDS)}; got {kinds}")
        languages = dict(DEFAULT_LANGUAGES if languages is None else languages)
        if set(languages) - set(_LOCALES) or min(languages.values(), default=0) < 0 or not sum(languages.values()) > 0:
            raise ValueError(f"languages must be among {', '.join(_LOCALES)}; got {', '.join(languages)}")
        self.min_len, self.max_len = min_len, max_len
        self.rng = np.random.default_rng(seed)
        self.fold_case = charset is not None and charset.lowercase
        self.allowed: frozenset[str] | None = frozenset(charset.chars) if charset is not None else None
        alphabet = sorted(self.allowed - {" "}) if self.allowed is not None else list(_RANDOM_ALPHABET)
        if not alphabet:
            raise ValueError("charset has no characters besides the space")
        self.alphabet = tuple(alphabet)
        self.kind_names = tuple(k for k, w in kinds.items() if w > 0)
        self.kind_cdf = (np.cumsum([kinds[k] for k in self.kind_names]) / sum(kinds.values())).tolist()
        self.langs = tuple(lang for lang, w in languages.items() if w > 0)
        self.lang_cdf = (np.cumsum([languages[k] for k in self.langs]) / sum(languages.values())).tolist()
        self.tables = {lang: _word_table(lang) for lang in self.langs}
        self.stats: Counter = Counter()
        self._makers: dict[str, Callable[[np.random.Generator, str], str]] = {
            "word": self._word, "phrase": self._phrase, "name": self._name, "place": self._place,
            "company": self._company, "date": self._date, "amount": self._amount, "number": self._number,
            "code": self._code, "random": self._random_kind,
        }

    def sample(self, rng: np.random.Generator | None = None) -> str:
        rng = self.rng if rng is None else rng
        for _ in range(_MAX_ATTEMPTS):
            kind = self.kind_names[min(bisect.bisect(self.kind_cdf, rng.random()), len(self.kind_names) - 1)]
            lang = self.langs[min(bisect.bisect(self.lang_cdf, rng.random()), len(self.langs) - 1)]
            text = " ".join(self._makers[kind](rng, lang).split())
            if not self.min_len <= len(text) <= self.max_len:
                self.stats["redrawn_length"] += 1
                continue
            fitted = self._fit(text)
            if fitted is not None:
                return fitted
            self.stats["redrawn_out_of_charset"] += 1
        # Only reachable with a charset that almost nothing fits (e.g. digits only): random strings always fit.
        self.stats["fallback_random"] += 1
        return self._random(rng)

    def _fit(self, text: str) -> str | None:
        """``text`` restricted to the charset: as is, without accents, or lower-cased; None if nothing fits."""
        if self.allowed is None or self._fits(text):
            return text
        plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        if self._fits(plain):
            self.stats["accents_stripped"] += 1
            return plain
        for candidate in (text.lower(), plain.lower()):
            if self._fits(candidate):
                self.stats["case_folded"] += 1
                return candidate
        return None

    def _fits(self, text: str) -> bool:
        allowed = self.allowed
        return all(c in allowed for c in (text.lower() if self.fold_case else text))

    # --- sources -------------------------------------------------------------------------------------------------
    def _draw_word(self, rng: np.random.Generator, lang: str) -> str:
        words, cdf = self.tables[lang]
        return words[min(bisect.bisect(cdf, rng.random()), len(words) - 1)]

    def _word(self, rng: np.random.Generator, lang: str) -> str:
        word = _case(rng, self._draw_word(rng, lang), upper=0.08, title=0.27)
        r = rng.random()
        if r < 0.12:
            word += _pick(rng, (",", ".", ":", ";", "!", "?", ")", "'s", "...", "-"))
        elif r < 0.15:
            quote = _pick(rng, ('""', "()", "''", "«»", "“”", "[]"))
            word = quote[0] + word + quote[1]
        return word

    def _phrase(self, rng: np.random.Generator, lang: str) -> str:
        target = int(rng.integers(self.min_len, self.max_len + 1))
        words = [self._draw_word(rng, lang)]
        while len(" ".join(words)) < target:
            word = self._draw_word(rng, lang)
            if rng.random() < 0.08:
                words[-1] += _pick(rng, (",", ",", ";", ":", " -"))
            words.append(word)
        if len(words) > 1 and len(" ".join(words)) > self.max_len:
            words.pop()
        text = " ".join(words)
        r = rng.random()
        if r < 0.35:
            text = text[0].upper() + text[1:]
        elif r < 0.45:
            text = text.upper()
        elif r < 0.55:
            text = " ".join(w[:1].upper() + w[1:] for w in words)
        if rng.random() < 0.2:
            text += _pick(rng, (".", ".", ",", ":", "?", "!", "..."))
        return text

    def _fake(self, rng: np.random.Generator, lang: str, method: str) -> str:
        fake = _faker(_pick(rng, _LOCALES[lang]))
        fake.seed_instance(int(rng.integers(2**32)))
        return str(getattr(fake, method)())

    def _name(self, rng: np.random.Generator, lang: str) -> str:
        r = rng.random()
        if r < 0.4:
            text = self._fake(rng, lang, "name")
        elif r < 0.6:
            text = self._fake(rng, lang, "last_name")
        elif r < 0.75:
            text = self._fake(rng, lang, "first_name")
        elif r < 0.88:
            text = f"{self._fake(rng, lang, 'last_name')}, {self._fake(rng, lang, 'first_name')}"
        else:
            text = f"{self._fake(rng, lang, 'first_name')[0]}. {self._fake(rng, lang, 'last_name')}"
        return _case(rng, text, upper=0.12, title=0.0)

    def _place(self, rng: np.random.Generator, lang: str) -> str:
        method = _pick(rng, ("street_address", "street_address", "city", "city", "street_name", "country"))
        text = self._fake(rng, lang, method).split("\n")[0]
        if method == "city" and rng.random() < 0.5:
            text = f"{self._fake(rng, lang, 'postcode')} {text}"
        return _case(rng, text, upper=0.12, title=0.0)

    def _company(self, rng: np.random.Generator, lang: str) -> str:
        return _case(rng, self._fake(rng, lang, "company" if rng.random() < 0.7 else "job"), upper=0.15, title=0.0)

    def _date(self, rng: np.random.Generator, lang: str) -> str:
        year, month, day = int(rng.integers(1950, 2036)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
        names = _MONTHS.get(lang, _MONTHS["en"])
        month_name = names[month - 1]
        formats = (f"{day:02d}.{month:02d}.{year}", f"{month:02d}/{day:02d}/{year}",
                   f"{day:02d}/{month:02d}/{year % 100:02d}", f"{year}-{month:02d}-{day:02d}",
                   f"{day}. {month_name} {year}", f"{month_name} {day}, {year}", f"{day} {month_name[:3]} {year}",
                   f"{day:02d}-{month_name[:3].upper()}-{year % 100:02d}", f"{day}.{month}.{year % 100:02d}",
                   f"{year}/{month:02d}/{day:02d}", f"{month_name} {year}")
        text = _pick(rng, formats)
        r = rng.random()
        if r < 0.15:
            text += f" {int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
        elif r < 0.25:
            text = f"{int(rng.integers(1, 13))}:{int(rng.integers(0, 60)):02d} {_pick(rng, ('AM', 'PM', 'am', 'pm'))}"
        return text

    def _amount(self, rng: np.random.Generator, lang: str) -> str:
        value = float(np.exp(rng.normal(3.0, 2.0)))
        cents = rng.random() < 0.8
        whole, frac = str(int(value)), f"{int(rng.integers(0, 100)):02d}"
        thousands, decimal = (",", ".") if lang == "en" or rng.random() < 0.3 else (_pick(rng, (".", " ", "'")), ",")
        number = (_group(whole, thousands) if rng.random() < 0.7 else whole) + (decimal + frac if cents else "")
        if not cents and rng.random() < 0.2:
            number += decimal + "-"  # "12,-" prices
        symbol = _pick(rng, _CURRENCIES)
        r = rng.random()
        text = f"{symbol}{number}" if r < 0.35 else f"{symbol} {number}" if r < 0.5 else f"{number} {symbol}"
        if r > 0.9:
            text = number
        if rng.random() < 0.08:
            text = "-" + text
        if rng.random() < 0.12:
            text = f"{_pick(rng, _FIELD_LABELS)}: {text}"
        return text

    def _number(self, rng: np.random.Generator, lang: str) -> str:
        n = str(int(rng.integers(0, 10 ** int(rng.integers(1, 7)))))
        r = rng.random()
        if r < 0.25:
            return n
        if r < 0.4:
            return f"{n}{_pick(rng, ('.', ','))}{_digits(rng, int(rng.integers(1, 4)))}"
        if r < 0.6:
            return f"{n[:3]}{_pick(rng, ('', ' '))}{_pick(rng, _UNITS)}"
        if r < 0.7:
            return f"{n[:2]}{_pick(rng, ('.', ','))}{_digits(rng, 1)}%"
        if r < 0.8:
            return f"{int(n[:2]) + 1}{_pick(rng, ('st', 'nd', 'rd', 'th', '.', 'e', 'º'))}"
        if r < 0.9:
            return f"{_pick(rng, _FIELD_LABELS)}{_pick(rng, (': ', ' ', ':'))}{n}"
        return f"{n[:2]}{_pick(rng, ('-', '/', ':', ' - '))}{_digits(rng, 2)}"

    def _code(self, rng: np.random.Generator, lang: str) -> str:
        r = rng.random()
        if r < 0.55:
            # Faker's es_ES ISBNs have an empty group ("978-13--0487647-8").
            return self._fake(rng, lang, _pick(rng, _FAKER_CODES)).replace("--", "-")
        year = str(int(rng.integers(1995, 2031)))
        return _pick(rng, _DOCUMENT_CODES)(rng, year)

    def _random_kind(self, rng: np.random.Generator, lang: str) -> str:
        return self._random(rng)

    def _random(self, rng: np.random.Generator) -> str:
        n = int(rng.integers(self.min_len, min(self.max_len, max(self.min_len, 12)) + 1))
        return "".join(self.alphabet[i] for i in rng.integers(0, len(self.alphabet), size=n))
