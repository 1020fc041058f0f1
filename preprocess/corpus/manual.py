"""Manual entries: a TSV of ``token<TAB>part of speech<TAB>definition`` (named entities, ...)."""
from pathlib import Path
from typing import Iterator

from preprocess.corpus.entries import Entry, SkipLog, numbered_lines


def read_manual(path: str | Path, skips: SkipLog | None = None) -> Iterator[Entry]:
    skips = skips if skips is not None else SkipLog()
    for where, line in numbered_lines(path, "--manual-tsv", "token<TAB>pos<TAB>definition per line", skips):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0].strip() or not fields[2].strip():
            skips.skip("not token<TAB>pos<TAB>definition", where)
            continue
        yield Entry(fields[0].strip(), fields[1].strip(), fields[2].strip(), "manual")
