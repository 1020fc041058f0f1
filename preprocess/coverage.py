"""Coverage report: how much of the vocabulary the corpus grounds in a definition."""
import numpy as np

from fairseq_defemb.frequency_groups import frequency_groups


def coverage_report(dictionary, grounded_by_source: dict[str, set[int]], surface, top: int = 50) -> dict:
    """Grounded tokens (a subword of at least one defined variant), overall, by source and
    by frequency group (first 30% / middle 50% / last 20% of the dictionary order)."""
    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))
    vocab = groups["all"]
    grounded = set().union(*grounded_by_source.values()) if grounded_by_source else set()
    mask = np.isin(vocab, np.fromiter(grounded, dtype=np.int64, count=len(grounded)))

    def share(ids: set[int], among: np.ndarray) -> dict:
        n = int(np.isin(among, np.fromiter(ids, dtype=np.int64, count=len(ids))).sum())
        return {"grounded": n, "of": int(len(among)), "share": round(n / max(len(among), 1), 4)}

    ungrounded = vocab[~mask][:top]
    return {
        "vocabulary_size": int(len(vocab)),
        "grounded": share(grounded, vocab),
        "by_source": {name: share(ids, vocab) for name, ids in sorted(grounded_by_source.items())},
        "by_frequency_group": {g: share(grounded, groups[g]) for g in ("frequent", "medium", "rare")},
        "most_frequent_ungrounded": [{"id": int(i), "token": surface(int(i))} for i in ungrounded],
    }


def coverage_markdown(report: dict) -> str:
    rows = [("all", report["grounded"])] + [(f"source: {k}", v) for k, v in report["by_source"].items()] + [
        (f"group: {k}", v) for k, v in report["by_frequency_group"].items()
    ]
    lines = ["| tokens | grounded | of | share |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {v['grounded']:,} | {v['of']:,} | {100 * v['share']:.1f}% |" for name, v in rows]
    shown = ", ".join(f"`{t['token']}`" for t in report["most_frequent_ungrounded"][:20])
    return "\n".join(lines) + f"\n\nMost frequent ungrounded tokens: {shown}\n"
