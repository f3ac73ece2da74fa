"""Words for search, the same way when an item is written and when someone searches.

A text is cut into words (letters and digits); each word is lower-cased and its accents are
folded ("électriques" -> "electriques", "Łódź" -> "lodz"). Each word is then stemmed with
the Snowball stemmer of every language in :data:`LANGUAGES`, so that "buses" and "bus",
"tendering" and "tender", "Ausschreibungen" and "Ausschreibung" share a form. An item keeps
every form of every word (:func:`index_terms`); a search word matches an item that shares
one of its forms, or (for words of :data:`PREFIX_MIN` letters or more) that has a word
beginning with it (:func:`query_terms`), which also finds compounds and forms no stemmer
knows ("Ausschreibung" finds "Ausschreibungsunterlagen").

No language is detected: titles and searches are a few words, too short to tell the language
reliably, and a CoP's members write in many. Stemming in every listed language instead
costs a few extra forms per word and finds the forms a member of any of them expects.

Changing :data:`LANGUAGES` or the folding changes what is stored: add a migration that
computes the search columns again (see migration 0008s).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import Stemmer

LANGUAGES = (
    "english",
    "german",
    "french",
    "spanish",
    "italian",
    "dutch",
    "polish",
    "portuguese",
)
"""The languages whose word forms a search understands (Snowball stemmers)."""

PREFIX_MIN = 4
"""A search word of at least this many letters also finds words beginning with it."""
STEM_MIN = 3
"""Stems shorter than this are dropped: they join unrelated short words ("gara" -> "ga")."""
MAX_WORD = 60
"""Longer "words" (hashes, base64) are cut to this many characters."""

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
# Letters that Unicode does not decompose into a base letter and an accent.
_FOLD = str.maketrans(
    {"ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ŀ": "l"}
)
_STEMMERS = tuple(Stemmer.Stemmer(language) for language in LANGUAGES)

# Words that carry no meaning in a search, in the listed languages; dropped from a search
# (unless nothing else is left) so that they do not make every item match.
STOP_WORDS = frozenset(
    # English
    "a an and are as at be by for from has have in is it its of on or that the this to was "
    "were will with "
    # German
    "der die das den dem des ein eine einer eines und oder von zu zum zur mit im auf fur ist "
    # French
    "le la les l d un une des du de et ou en au aux pour par sur est "
    # Spanish, Italian, Portuguese
    "el los las del y o para con il lo gli di e per da na no do dos das um uma "
    # Dutch, Polish
    "het een en van voor op te i w z na dla".split()
)


def fold(word: str) -> str:
    """Lower case without accents: "Électriques" -> "electriques"."""
    decomposed = unicodedata.normalize("NFKD", word.casefold().translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The words of ``text``, lower case, accents kept (NFKC: ligatures and widths undone)."""
    return [w[:MAX_WORD] for w in _WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())]


@lru_cache(maxsize=50_000)
def forms(word: str) -> tuple[str, ...]:
    """Every form of one lower-case word: folded, and stemmed in each language (from the
    word as written and from its folded spelling, so a search typed without accents stems
    alike). Numbers are not stemmed."""
    folded = fold(word)
    if not folded:
        return ()
    found = {folded}
    if not any(c.isdigit() for c in folded):
        for spelling in {word, folded}:
            for stemmer in _STEMMERS:
                stem = fold(stemmer.stemWord(spelling))
                if len(stem) >= STEM_MIN:
                    found.add(stem)
    found.discard("")
    return tuple(sorted(found))


def index_terms(*texts: str) -> str:
    """What an item keeps for search: every form of its words, each once (a search ranks
    by where a word is, not by how often), separated by spaces."""
    found = dict.fromkeys(term for text in texts for word in words(text) for term in forms(word))
    return " ".join(found)


@dataclass(frozen=True)
class QueryWord:
    """One search word: it matches an item having any of ``exact``, or a word starting
    with ``prefix`` (when set)."""

    word: str
    exact: tuple[str, ...]
    prefix: str | None


def query_words(query: str) -> list[str]:
    """The distinct words of a search, folded, stop words dropped (unless only those)."""
    found = list(dict.fromkeys(fold(w) for w in words(query)))
    found = [w for w in found if w]
    meaningful = [w for w in found if w not in STOP_WORDS]
    return meaningful or found


def query_terms(query: str) -> list[QueryWord]:
    """The search words of ``query`` with the forms each one matches."""
    result: list[QueryWord] = []
    raw = {fold(w): w for w in words(query)}
    for folded in query_words(query):
        variants = set(forms(raw.get(folded, folded))) | set(forms(folded))
        prefix = folded if len(folded) >= PREFIX_MIN else None
        exact = {v for v in variants if not (prefix and v.startswith(prefix))}
        result.append(QueryWord(word=folded, exact=tuple(sorted(exact)), prefix=prefix))
    return result


__all__ = [
    "LANGUAGES",
    "PREFIX_MIN",
    "STOP_WORDS",
    "QueryWord",
    "fold",
    "forms",
    "index_terms",
    "query_terms",
    "query_words",
    "words",
]
