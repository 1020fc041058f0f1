"""Manual entries: a TSV of ``token<TAB>part of speech<TAB>definition`` (named entities, ...)."""
from pathlib import Path
from typing import Iterator

from preprocess.entries import Entry, SkipLog


def read_manual(path: str | Path, skips: SkipLog | None = None) -> Iterator[Entry]:
    skips = skips if skips is not None else SkipLog()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--manual-tsv {path}: not found (token<TAB>pos<TAB>definition per line)")
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                skips.skip("invalid UTF-8", where)
                continue
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3 or not fields[0].strip() or not fields[2].strip():
                skips.skip("not token<TAB>pos<TAB>definition", where)
                continue
            yield Entry(fields[0].strip(), fields[1].strip(), fields[2].strip(), "manual")
