"""Wiktionary in the kaikki.org / wiktextract JSONL format (the paper's source), streamed."""
import json
from pathlib import Path
from typing import Iterator

from preprocess.entries import Entry, SkipLog

MAX_LINE_BYTES = 1 << 20  # a wiktextract line over 1 MiB is a broken dump, not a word


def read_wiktionary(path: str | Path, skips: SkipLog | None = None) -> Iterator[Entry]:
    """One entry per gloss of every sense; lines are read as bytes so bad UTF-8 is skipped, not fatal."""
    skips = skips if skips is not None else SkipLog()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--wiktionary-jsonl {path}: not found (a kaikki.org English JSONL dump)")
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES:
                skips.skip("line too long", where)
                continue
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                word, pos, senses = record["word"], record.get("pos", ""), record.get("senses", [])
            except UnicodeDecodeError:
                skips.skip("invalid UTF-8", where)
                continue
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                skips.skip("malformed JSON record", where)
                continue
            found = False
            for sense in senses if isinstance(senses, list) else []:
                for gloss in sense.get("glosses", []) if isinstance(sense, dict) else []:
                    if isinstance(gloss, str) and gloss.strip():
                        found = True
                        yield Entry(str(word), str(pos), gloss.strip(), "wiktionary")
            if not found:
                skips.skip("no definition", where)
