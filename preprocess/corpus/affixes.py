"""GCIDE's own prefix and suffix entries, for the word pieces that are those affixes.

GCIDE writes a suffix as "-ness" and a prefix as "un-". This source gives the bare piece
the affix's GCIDE definitions, and only in the form the affix takes inside a word: a
suffix in its attached forms (GPT-2 "ness" without the leading space, WordPiece "##ness"),
a prefix in its word-initial forms (GPT-2 " un", WordPiece "un"), in its own spelling.

    ness (suffix; lower case): A suffix used to form abstract nouns expressive of quality or state ...

A piece that is not letters (with inner hyphens: "-in-law") is not an affix entry and is
skipped; the GCIDE reader's own skips (garbled records) are counted by the gcide reader.
"""
import re
from typing import Iterable, Iterator

from preprocess.corpus.entries import Entry, SkipLog

PIECE = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


def affix_entries(gcide: Iterable[Entry], skips: SkipLog | None = None) -> Iterator[Entry]:
    """Suffix and prefix entries from GCIDE entries (``read_gcide()``), in their order."""
    skips = skips if skips is not None else SkipLog()
    for entry in gcide:
        word = entry.word
        if len(word) < 2 or not (word.startswith("-") or word.endswith("-")) or (word.startswith("-") and word.endswith("-")):
            continue
        suffix = word.startswith("-")
        piece = word[1:] if suffix else word[:-1]
        if not PIECE.fullmatch(piece):
            skips.skip("affix that is not letters", word)
            continue
        yield Entry(piece.lower(), "suffix" if suffix else "prefix", entry.definition, "affixes",
                    cased=False, position="attached" if suffix else "initial")
