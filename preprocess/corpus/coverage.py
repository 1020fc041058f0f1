"""Coverage report: how much of the vocabulary the corpus grounds in a definition, what
kind of token the rest is, the licences of the sources, and sample prompts."""
import re
from typing import Callable

import numpy as np

from fairseq_defemb.analysis.frequency_groups import frequency_groups


UNUSED_SLOT = re.compile(r"\[unused\d+\]")


def token_shape(surface: str, word_initial: bool, partial: bool) -> str:
    """The kind of a token, for the table of what stays ungrounded: "word-initial" is
    GPT-2's leading-space form and WordPiece's bare piece, "continuation" the others."""
    if partial:
        return "partial UTF-8 bytes"
    if UNUSED_SLOT.fullmatch(surface):
        return "[unusedN] slot"
    if not surface.strip() or not surface.isprintable():
        return "whitespace and controls"
    if not surface.isascii():
        return "non-ASCII"
    if not any(c.isalnum() for c in surface):
        return "punctuation and symbols"
    if surface.isdigit():
        return "digits"
    if any(c.isdigit() for c in surface):
        return "letters and digits"
    if not surface.isalpha():
        return "letters with punctuation"
    where = "word-initial" if word_initial else "continuation"
    if surface.islower():
        return f"lower-case, {where}"
    if surface.isupper():
        return f"all caps, {where}"
    if surface[0].isupper() and surface[1:].islower():
        return f"capitalized, {where}"
    return f"mixed case, {where}"


def coverage_report(dictionary, grounded_by_source: dict[str, set[int]], surface, top: int = 50,
                    specific: set[int] | None = None, whole: set[int] | None = None,
                    shape: Callable[[int], str] | None = None) -> dict:
    """Grounded tokens (a subword of at least one defined variant), overall, by source and
    by frequency group (first 30% / middle 50% / last 20% of the dictionary order).
    ``specific``: the tokens grounded by a definition that is more than a category ("a
    surname"); the others are counted as grounded only generically. ``whole``: the tokens
    that are a whole variant (one-token span), not only a piece of a longer one. ``shape``: token id ->
    its kind (``token_shape``), to count the ungrounded tokens by kind."""
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
    report = {
        "vocabulary_size": int(len(vocab)),
        "grounded": share(grounded, vocab),
        "by_source": {name: share(ids, vocab) for name, ids in sorted(grounded_by_source.items())},
        "by_frequency_group": {g: share(grounded, groups[g]) for g in ("frequent", "medium", "rare")},
        "ungrounded_unused_slots": len(unused),
        "most_frequent_ungrounded": [{"id": int(i), "token": surface(int(i))} for i in ungrounded],
    }
    if specific is not None:
        report["grounded_only_generic"] = share(grounded - specific, vocab)
    if whole is not None:
        report["grounded_as_whole_variant"] = share(grounded & whole, vocab)
    if shape is not None:
        by_shape: dict[str, dict] = {}
        for i in vocab[~mask]:  # dictionary order: the examples are the most frequent of their kind
            row = by_shape.setdefault(shape(int(i)), {"tokens": 0, "examples": []})
            row["tokens"] += 1
            if len(row["examples"]) < 6:
                row["examples"].append(shown(surface(int(i)), int(i)))
        report["ungrounded_by_shape"] = {
            k: {**v, "share_of_vocabulary": round(v["tokens"] / max(len(vocab), 1), 4)}
            for k, v in sorted(by_shape.items(), key=lambda kv: -kv[1]["tokens"])
        }
    return report


def shown(surface: str, token_id: int) -> str:
    """A token as a report shows it: its characters, or "[id]" when they are invisible."""
    return surface if surface.strip() and surface.isprintable() else f"[{token_id}]"


def code(text: str) -> str:
    """Markdown inline code that survives backticks, pipes and newlines in the token."""
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def licences_markdown(licences: dict[str, dict]) -> str:
    lines = ["Sources and their licences (as their distributors state them; where read):", "",
             "| source | data | licence | where read |", "|---|---|---|---|"]
    lines += [f"| {name} | {v['data']} | {v['licence']} | {v['where']} |" for name, v in licences.items()]
    return "\n".join(lines) + "\n"


def prompt_samples(prompts, decode: Callable[[list[int]], str], per_source: int, seed: int) -> dict[str, list[str]]:
    """``per_source`` prompts of each source drawn at random (seeded), as text."""
    by_source: dict[str, list[int]] = {}
    for k, p in enumerate(prompts):
        by_source.setdefault(p.source, []).append(k)
    rng = np.random.default_rng(seed)
    return {source: [decode([int(t) for t in prompts[k].ids]) for k in sorted(rng.choice(ks, min(per_source, len(ks)), replace=False))]
            for source, ks in by_source.items()}


def samples_markdown(samples: dict[str, list[str]]) -> str:
    lines = []
    for source, texts in samples.items():
        lines += [f"Random prompts of `{source}`:", ""] + [f"- {code(t)}" for t in texts] + [""]
    return "\n".join(lines)


def coverage_markdown(report: dict, title: str = "") -> str:
    rows = [("all", report["grounded"])] + [(f"source: {k}", v) for k, v in report["by_source"].items()] + [
        (f"group: {k}", v) for k, v in report["by_frequency_group"].items()
    ]
    lines = [f"Coverage of the vocabulary ({title}):", ""] if title else []
    lines += ["| tokens | grounded | of | share |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {v['grounded']:,} | {v['of']:,} | {100 * v['share']:.1f}% |" for name, v in rows]
    if "grounded_only_generic" in report:
        v = report["grounded_only_generic"]
        lines.append(f"| of which only by a category (\"a surname\") | {v['grounded']:,} | {v['of']:,} | {100 * v['share']:.1f}% |")
    if "grounded_as_whole_variant" in report:
        v = report["grounded_as_whole_variant"]
        lines.append(f"| of which a whole headword variant (not only a piece of one) | {v['grounded']:,} | {v['of']:,} | "
                     f"{100 * v['share']:.1f}% |")
    if report.get("ungrounded_by_shape"):
        lines += ["", "Ungrounded tokens by shape (word-initial: GPT-2's leading space, WordPiece without ##):", "",
                  "| shape | tokens | share of vocab | most frequent |", "|---|---:|---:|---|"]
        lines += [f"| {k} | {v['tokens']:,} | {100 * v['share_of_vocabulary']:.1f}% | "
                  f"{' '.join(code(t) for t in v['examples'])} |" for k, v in report["ungrounded_by_shape"].items()]
    tokens = " ".join(code(shown(t["token"], t["id"])) for t in report["most_frequent_ungrounded"])
    unused = report.get("ungrounded_unused_slots", 0)
    note = f" ({unused:,} ungroundable [unusedN] slots not listed)" if unused else ""
    return "\n".join(lines) + f"\n\n{len(report['most_frequent_ungrounded'])} most frequent ungrounded tokens{note}: {tokens}\n"
