"""What every definition source yields, and the ledger of what it had to skip."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One sense of one word: the unit a prompt is built from."""

    word: str
    pos: str
    definition: str
    source: str


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
