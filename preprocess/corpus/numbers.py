"""Definitions for the vocabulary's numeric tokens, by spelling them out ("2" -> "two").

As in the paper (Appendix B.1). A numeric token is one whose surface form, without the
leading-space marker, is all ASCII digits. Values up to 10^15 are spelled as English
cardinals; a leading zero ("02") or a longer string is read digit by digit.
"""
from typing import Iterable, Iterator

from preprocess.corpus.entries import Entry

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words.append(f"{ONES[n // 100]} hundred")
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10] + (f"-{ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(ONES[n])
    return " ".join(words)


def spell_number(digits: str) -> str:
    """English words for a digit string: "1999" -> "one thousand nine hundred ninety-nine"."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"not a digit string: {digits!r}")
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > 15:
        return " ".join(ONES[int(d)] for d in digits)
    n = int(digits)
    if n == 0:
        return "zero"
    words = []
    for scale, name in SCALES:
        if n >= scale:
            words.append(f"{_below_thousand(n // scale)} {name}")
            n %= scale
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def number_entries(surfaces: Iterable[str]) -> Iterator[Entry]:
    """One entry per distinct numeric surface form of the vocabulary."""
    for surface in sorted(set(s for s in surfaces if s.isascii() and s.isdigit())):
        yield Entry(surface, "numeral", f"the number {spell_number(surface)}", "numbers")
