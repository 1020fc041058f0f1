"""Punctuation, symbols and non-ASCII characters of the vocabulary, named by Unicode.

    ! (punctuation; no letters): exclamation mark, a punctuation mark (U+0021)
    é (letter; lower case): latin small letter e with acute, a lower-case letter (U+00E9)
    ... (punctuation; no letters): a sequence of: full stop (3 times)

From the standard library's ``unicodedata`` (the Unicode Character Database of the running
Python): the character's name and its general category, in the standard's own words. Like
``numbers``, the source reads the vocabulary: every token of one named character without
ASCII letters or digits, and every token made only of punctuation and symbols. Tokens with
ASCII letters or digits are words and numbers (other sources); words of several non-ASCII
letters ("日本", "как") are foreign words, which no Unicode name defines. A character
without a name (controls, private use, unassigned) is skipped and counted.
"""
import unicodedata
from typing import Iterable, Iterator

from preprocess.corpus.entries import Entry, SkipLog

# Unicode general categories (UAX #44), described as the standard names them.
CATEGORY = {
    "Lu": "an upper-case letter", "Ll": "a lower-case letter", "Lt": "a title-case letter", "Lm": "a modifier letter",
    "Lo": "a letter", "Mn": "a non-spacing combining mark", "Mc": "a spacing combining mark", "Me": "an enclosing mark",
    "Nd": "a decimal digit", "Nl": "a letter number", "No": "a number character", "Pc": "a connector punctuation mark",
    "Pd": "a dash", "Ps": "an opening punctuation mark", "Pe": "a closing punctuation mark",
    "Pi": "an opening quotation mark", "Pf": "a closing quotation mark", "Po": "a punctuation mark",
    "Sm": "a mathematical symbol", "Sc": "a currency symbol", "Sk": "a modifier symbol", "So": "a symbol",
    "Zs": "a space character", "Cf": "a format character",
}
KIND = {"L": "letter", "M": "mark", "N": "numeral", "P": "punctuation", "S": "symbol", "Z": "space", "C": "format character"}


def describe_character(char: str) -> str | None:
    """"exclamation mark, a punctuation mark (U+0021)", or None for an unnamed character."""
    name, category = unicodedata.name(char, None), unicodedata.category(char)
    if name is None or category not in CATEGORY:
        return None
    return f"{name.lower()}, {CATEGORY[category]} (U+{ord(char):04X})"


def symbol_entry(surface: str) -> Entry | None:
    """The entry of one vocabulary token's characters, or None if it is not a symbol token
    (a word, a number, a foreign word) or holds an unnamed character."""
    if not surface or any(c.isascii() and c.isalnum() for c in surface):
        return None
    if len(surface) == 1:
        described = describe_character(surface)
        if described is None:
            return None
        return Entry(surface, KIND[unicodedata.category(surface)[0]], described, "symbols", cased=False)
    if not all(unicodedata.category(c)[0] in "PS" and unicodedata.name(c, None) for c in surface):
        return None
    runs: list[list] = []
    for c in surface:
        if runs and runs[-1][0] == c:
            runs[-1][1] += 1
        else:
            runs.append([c, 1])
    parts = [unicodedata.name(c).lower() + (f" ({n} times)" if n > 1 else "") for c, n in runs]
    kinds = {KIND[unicodedata.category(c)[0]] for c in surface}
    return Entry(surface, kinds.pop() if len(kinds) == 1 else "symbol", "a sequence of: " + ", ".join(parts), "symbols",
                 cased=False)


def symbol_entries(surfaces: Iterable[str], skips: SkipLog | None = None) -> Iterator[Entry]:
    """One entry per distinct symbol surface of the vocabulary."""
    skips = skips if skips is not None else SkipLog()
    for surface in sorted(set(surfaces)):
        entry = symbol_entry(surface)
        if entry is not None:
            yield entry
        elif len(surface) == 1 and not (surface.isascii() and surface.isalnum()):
            skips.skip("character without a Unicode name", f"U+{ord(surface):04X}")
