"""Wiktionary in the kaikki.org / wiktextract JSONL format (the paper's source), streamed."""
import json
from pathlib import Path
from typing import Iterator

from preprocess.entries import Entry, SkipLog, numbered_lines


def read_wiktionary(path: str | Path, skips: SkipLog | None = None) -> Iterator[Entry]:
    """One entry per gloss of every sense, one JSON object per line."""
    skips = skips if skips is not None else SkipLog()
    for where, line in numbered_lines(path, "--wiktionary-jsonl", "a kaikki.org English JSONL dump", skips):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            word, pos, senses = record["word"], record.get("pos", ""), record.get("senses", [])
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
