"""What every definition source yields, and the ledger of what it had to skip."""
import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

MAX_LINE_BYTES = 1 << 20  # a line over 1 MiB in a dictionary dump is a broken record, not a word


POSITIONS = ("any", "initial", "attached")


@dataclass(frozen=True)
class Entry:
    """One sense of one word: the unit a prompt is built from.

    ``cased=False`` keeps the headword's own spelling only (a name, a symbol, an affix:
    "Texas" is no "texas", "É" no "é"); ``position`` keeps only its word-initial forms
    (a prefix: GPT-2 " un") or only its attached forms (a suffix: GPT-2 "ness",
    WordPiece "##ness"). ``generic`` marks a definition that only names a category
    ("a surname"), which coverage counts apart. ``token_id`` names the one dictionary id the
    entry grounds (a vocabulary symbol of a manual file, "\u0120iTunes"): the prompt's one span is
    that id, and ``word`` (its characters) only labels the prompt; None: the word's variants."""

    word: str
    pos: str
    definition: str
    source: str
    cased: bool = True
    position: str = "any"
    generic: bool = False
    token_id: int | None = None


@dataclass
class SkipLog:
    """Counts of skipped records per reason, with the first few locations of each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    keep: int = 5

    def skip(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.keep:
            shown.append(where)

    def merge(self, other: "SkipLog") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            self.examples.setdefault(reason, []).extend(other.examples.get(reason, [])[: self.keep])
            self.examples[reason] = self.examples[reason][: self.keep]

    def as_dict(self) -> dict:
        return {reason: {"count": n, "first": self.examples.get(reason, [])} for reason, n in sorted(self.counts.items())}


def numbered_lines(path: str | Path, flag: str, expected: str, skips: SkipLog) -> Iterator[tuple[str, str]]:
    """("file:line", text) of a line-oriented source, read as bytes so that invalid UTF-8
    and absurdly long lines are skipped and counted instead of ending the build."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: not found ({expected})")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        lineno = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES:  # skip the rest of the line without holding it in memory
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(MAX_LINE_BYTES)
                skips.skip("line too long", where)
                continue
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                skips.skip("invalid UTF-8", where)
                continue
            yield where, text
