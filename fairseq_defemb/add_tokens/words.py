"""The new words of ``defemb-add-tokens``: a TSV of ``word<TAB>pos<TAB>definition``, several lines
per word allowed (one per definition). Malformed lines are skipped and counted with their line
numbers; an input with no usable line is an error."""
from dataclasses import dataclass, field
from pathlib import Path

from preprocess.corpus.entries import Entry, SkipLog, numbered_lines


class AddTokensError(ValueError):
    """Input from which no model can be written; the message names the file, line and fix."""


@dataclass
class NewWord:
    """One word to add and every definition the TSV gives it, in file order."""

    word: str
    entries: list[Entry] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # "file:line" of each entry


def read_words(path: str | Path, skips: SkipLog | None = None) -> list[NewWord]:
    """The words of ``path`` in order of first appearance. Skipped and counted in ``skips``:
    lines that are not three tab-separated fields, an empty word or definition, a word with
    whitespace (one token per word), a line repeating an earlier (word, pos, definition)."""
    skips = skips if skips is not None else SkipLog()
    words: dict[str, NewWord] = {}
    seen: set[tuple[str, str, str]] = set()
    for where, line in numbered_lines(path, "--words", "word<TAB>pos<TAB>definition per line", skips):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            skips.skip("not word<TAB>pos<TAB>definition", where)
            continue
        word, pos, definition = (f.strip() for f in fields)
        if not word:
            skips.skip("empty word", where)
        elif not definition:
            skips.skip("empty definition", where)
        elif len(word.split()) > 1:
            skips.skip("word with whitespace (a token is one word)", where)
        elif (word, pos, definition) in seen:
            skips.skip("duplicate line (same word, pos and definition)", where)
        else:
            seen.add((word, pos, definition))
            entry = words.setdefault(word, NewWord(word))
            entry.entries.append(Entry(word, pos, definition, "add-tokens"))
            entry.lines.append(where)
    if not words:
        raise AddTokensError(f"--words {path}: no usable line (word<TAB>pos<TAB>definition); skipped: {skips.as_dict()}")
    return list(words.values())
