"""Coverage report: how much of the vocabulary the corpus grounds in a definition."""
import re

import numpy as np

from defemb.analysis.frequency_groups import frequency_groups


UNUSED_SLOT = re.compile(r"\[unused\d+\]")


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

    # BERT's "[unusedN]" slots are ungroundable by design: counted, not listed.
    unused = {int(i) for i in vocab[~mask] if UNUSED_SLOT.fullmatch(surface(int(i)))}
    ungrounded = [i for i in vocab[~mask][: top + len(unused)] if int(i) not in unused][:top]
    return {
        "vocabulary_size": int(len(vocab)),
        "grounded": share(grounded, vocab),
        "by_source": {name: share(ids, vocab) for name, ids in sorted(grounded_by_source.items())},
        "by_frequency_group": {g: share(grounded, groups[g]) for g in ("frequent", "medium", "rare")},
        "ungrounded_unused_slots": len(unused),
        "most_frequent_ungrounded": [{"id": int(i), "token": surface(int(i))} for i in ungrounded],
    }


def coverage_markdown(report: dict, title: str = "") -> str:
    rows = [("all", report["grounded"])] + [(f"source: {k}", v) for k, v in report["by_source"].items()] + [
        (f"group: {k}", v) for k, v in report["by_frequency_group"].items()
    ]
    lines = [f"Coverage of the vocabulary ({title}):", ""] if title else []
    lines += ["| tokens | grounded | of | share |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {v['grounded']:,} | {v['of']:,} | {100 * v['share']:.1f}% |" for name, v in rows]
    shown = " ".join(f"`{t['token']}`" if t["token"].strip() else f"[{t['id']}]" for t in report["most_frequent_ungrounded"])
    unused = report.get("ungrounded_unused_slots", 0)
    note = f" ({unused:,} ungroundable [unusedN] slots not listed)" if unused else ""
    return "\n".join(lines) + f"\n\n{len(report['most_frequent_ungrounded'])} most frequent ungrounded tokens{note}: {shown}\n"
