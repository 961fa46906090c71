"""What a comment is about: themes from configurable dictionaries, in Polish and English. Pure.

A theme is a name and its keywords ("obsługa", "obsługa klienta", "support"). A comment mentions
a theme when one of its keywords appears in it, where a word is compared by every form that makes
it the same word:
- its lemma, from simplemma (which ships its own data) in each language tried, so "obsługi" and
  "obsłudze" are "obsługa", "invoices" is "invoice";
- without diacritics, so "obsluga" typed on an English keyboard is "obsługa" too;
- and, for keywords written with diacritics and of five letters or more, a word that starts with
  the keyword's stem (its lemma without diacritics less the last letter), which catches
  inflected forms typed without diacritics that no lemmatiser knows ("obslugi").
A keyword of several words matches those words in a row.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import simplemma

LANGUAGES: tuple[str, ...] = ("pl", "en")
# Words of letters, joined by an apostrophe (straight or U+2019) or a hyphen.
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*", re.UNICODE)
# Letters NFKD does not take apart.
_UNFOLDABLE = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "đ": "d", "ß": "ss"})
_MIN_STEM_KEYWORD = 5

# A starting dictionary; tenants configure their own.
DEFAULT_THEMES: Mapping[str, tuple[str, ...]] = {
    "customer service": ("obsługa", "obsługa klienta", "konsultant", "service", "support", "staff"),
    "delivery": ("dostawa", "wysyłka", "kurier", "delivery", "shipping", "courier"),
    "price": ("cena", "drogo", "koszt", "price", "expensive", "cost"),
    "invoicing": ("faktura", "rachunek", "płatność", "invoice", "billing", "payment"),
    "product quality": ("jakość", "awaria", "błąd", "quality", "bug", "defect"),
    "waiting time": ("czekać", "oczekiwanie", "termin", "wait", "delay", "slow"),
    "app and website": ("aplikacja", "strona", "app", "website", "login"),
}


def fold(text: str) -> str:
    """Lower case without diacritics: "Obsługa" -> "obsluga"."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_UNFOLDABLE))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def words(text: str) -> list[str]:
    return [match.group(0).lower() for match in _WORD.finditer(text)]


@lru_cache(maxsize=65_536)
def forms(word: str, languages: tuple[str, ...] = LANGUAGES) -> frozenset[str]:
    """Every folded form a word is compared by: itself and its lemma in each language."""
    found = {fold(word)}
    for language in languages:
        found.add(fold(simplemma.lemmatize(word, lang=language)))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class _Keyword:
    theme: str
    words: tuple[frozenset[str], ...]  # the forms of each word of the keyword
    stems: tuple[str | None, ...]


class ThemeTagger:
    def __init__(
        self,
        themes: Mapping[str, Sequence[str]] = DEFAULT_THEMES,
        *,
        languages: tuple[str, ...] = LANGUAGES,
    ) -> None:
        self._languages = languages
        self._keywords: list[_Keyword] = []
        for theme, keywords in themes.items():
            for keyword in keywords:
                parts = words(keyword)
                if not parts:
                    raise ValueError(f"theme {theme!r}: keyword {keyword!r} has no word")
                word_forms = tuple(forms(part, languages) for part in parts)
                stems = tuple(_stem(part, f) for part, f in zip(parts, word_forms, strict=True))
                self._keywords.append(_Keyword(theme, word_forms, stems))
        # One-word keywords are looked up by form (and by stem for words typed without their
        # diacritics); only phrases are matched position by position.
        self._by_form: dict[str, set[str]] = {}
        self._by_stem: dict[str, set[str]] = {}
        self._phrases: list[_Keyword] = []
        for known in self._keywords:
            if len(known.words) > 1:
                self._phrases.append(known)
                continue
            for form in known.words[0]:
                self._by_form.setdefault(form, set()).add(known.theme)
            if known.stems[0] is not None:
                self._by_stem.setdefault(known.stems[0], set()).add(known.theme)
        self._stem_lengths = sorted({len(stem) for stem in self._by_stem})

    def tag(self, text: str | None) -> frozenset[str]:
        """The themes `text` mentions."""
        if not text:
            return frozenset()
        token_forms = [forms(token, self._languages) for token in words(text)]
        found: set[str] = set()
        for token in token_forms:
            for form in token:
                themes = self._by_form.get(form)
                if themes is not None:
                    found |= themes
                for length in self._stem_lengths:
                    if len(form) >= length and (themes := self._by_stem.get(form[:length])):
                        found |= themes
        for keyword in self._phrases:
            if keyword.theme not in found and _occurs(keyword, token_forms):
                found.add(keyword.theme)
        return frozenset(found)

    def tag_many(self, texts: Iterable[str | None]) -> list[frozenset[str]]:
        return [self.tag(text) for text in texts]


def _stem(word: str, word_forms: frozenset[str]) -> str | None:
    """The prefix an inflected form typed without diacritics keeps: the shortest folded form
    less its last letter. Only for words written with diacritics (a word without them is
    lemmatised however it is typed) and long enough not to match everything."""
    if fold(word) == word:
        return None
    shortest = min(word_forms, key=len)
    return shortest[:-1] if len(shortest) >= _MIN_STEM_KEYWORD else None


def _occurs(keyword: _Keyword, token_forms: list[frozenset[str]]) -> bool:
    span = len(keyword.words)
    for start in range(len(token_forms) - span + 1):
        if all(
            _same_word(token_forms[start + i], keyword.words[i], keyword.stems[i])
            for i in range(span)
        ):
            return True
    return False


def _same_word(token: frozenset[str], word: frozenset[str], stem: str | None) -> bool:
    if token & word:
        return True
    return stem is not None and any(form.startswith(stem) for form in token)
