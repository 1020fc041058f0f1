#!/usr/bin/env python
"""The ladder behind the recommended recipe: one change at a time, each measured on held-out tokens.

``make eval``'s setting (all-MiniLM-L6-v2, GCIDE + spelled-out numbers, prompts cut to 32 tokens,
200 held-out frequent and medium tokens), one seed per run. A row is a definition model built with
the console commands a user runs (``defemb-fit``, ``fairseq-train --task definition_cloze``), read
by ``defemb-predict`` on the held-out prompts (the paper's prompt, and the definition only) and
ranked by ``fairseq_defemb.analysis.reconstruction``; its cost is the wall and CPU seconds of its
own steps. The first rows climb from the paper as printed to the recommended recipe; the others
change one thing of the recommended recipe. Each row's result is kept in ``--out``/rows, so a run
that stops resumes where it stopped; ``--out``/ladder.md and ladder.json hold the table.
With ``--eval-out``, the ladder reads ``make eval``'s converted model and corpus of the same seed and
takes the rows ``make eval`` ran (paper, recommended, fit-alone) from its predictions and step times
instead of running them again.

    python examples/definition_ladder.py --out ladder-s1 --seed 1
    python examples/definition_ladder.py --out ladder-s1 --seed 1 --eval-out eval-out --rows +ls +retrieval
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

from fairseq_defemb.recipes import PAPER, RECOMMENDED, Budget

from demo import minilm_dir
from demo_support import BIN, Step, definition_cloze_cmd

BUDGET = Budget(updates=1000, lr=5e-4, warmup=25, max_tokens=1024)
READINGS = {"heldout": "paper prompt", "heldout_defonly": "definition only"}
RETRIEVAL = ["--retrieval-weight", "1", "--retrieval-temperature", "0.05"]
STATE = ["--projection-input", "state"]  # W reads h_{g(k)} alone (Eq. 4)
PROMPT_MEAN = ["--projection-input", "state+prompt-mean"]  # ... and the prompt's mean state beside it
FIT, TRAIN = RECOMMENDED.fit_flags(), list(RECOMMENDED.train)
# rows not centred at prediction (the centring changes no training step): the climb up to the definition-only
# copies, and the rows measured against that uncentred recipe
RAW = ["--prediction-mean", "raw"]
assert TRAIN[:len(RETRIEVAL)] == RETRIEVAL, "the rows below change the recommended recipe's options by position"
# name -> (what changes, fit: None | defemb-fit options, training options or None (the fit alone), budget)
ROWS = {
    "paper": ("the paper as printed: Eq. 5 alone from the authors' W, the paper's prompts", None, list(PAPER.train), BUDGET),
    "+ls": ("+ W from least squares (defemb-fit: headword reads, lambda on validation)",
            ["--skip-definition-only-copies", *STATE], ["--skip-definition-only-copies", *RAW], BUDGET),
    "+retrieval": ("+ the retrieval term (InfoNCE over all rows, weight 1, temperature 0.05)",
                   ["--skip-definition-only-copies", *STATE], ["--skip-definition-only-copies", *RETRIEVAL, *RAW],
                   BUDGET),
    "+copies": ("+ the definition-only copies in the corpus", FIT, [*TRAIN, *RAW], BUDGET),
    "recommended": ("+ rows centred on the pretrained rows' mean (--prediction-mean rows): the recommended recipe",
                    FIT, TRAIN, BUDGET),
    "fit-alone": ("recommended, its fitted W alone (no training)", FIT, None, BUDGET),
    "prompt-mean": ("recommended, W reading the prompt's mean state beside the headword's (fit and training)",
                    PROMPT_MEAN, [*TRAIN, *PROMPT_MEAN], BUDGET),
    "fit-alone-prompt-mean": ("the fitted W alone, reading the prompt's mean state too (defemb-fit's default)",
                              PROMPT_MEAN, None, BUDGET),
    "fit-every": ("recommended, W fitted on every headword subword, not the headword as written",
                  [*FIT, "--positions", "every"], TRAIN, BUDGET),
    "random-w": ("recommended, from nn.Linear's random W (no fit)", None, ["--projection-init", "random", *TRAIN],
                 BUDGET),
    "mask-everywhere": ("recommended, --mask-headword-everywhere (no copy of the headword in its definition)", FIT,
                        [*TRAIN, "--mask-headword-everywhere"], BUDGET),
    "temperature-0.1": ("+copies, retrieval temperature 0.1", FIT,
                        ["--retrieval-weight", "1", "--retrieval-temperature", "0.1", *TRAIN[len(RETRIEVAL):], *RAW],
                        BUDGET),
    "weight-0.3": ("recommended, retrieval weight 0.3", FIT,
                   ["--retrieval-weight", "0.3", "--retrieval-temperature", "0.05", *TRAIN[len(RETRIEVAL):]], BUDGET),
    "lr-1e-3": ("+copies, peak learning rate 1e-3", FIT, [*TRAIN, *RAW],
                Budget(updates=1000, lr=1e-3, warmup=25, max_tokens=1024)),
    "mask-always": ("+copies, headword subwords always <mask> (not 50/25/25)", FIT,
                    [*TRAIN, "--mask-prob", "1", "--random-token-prob", "0", *RAW], BUDGET),
    "2000-updates": ("recommended, 2,000 updates", FIT, TRAIN, Budget(updates=2000, lr=5e-4, warmup=25, max_tokens=1024)),
}


# make eval's runs of three rows: the slug of their prediction files, and the steps that built them
EVAL_ROWS = {"paper": ("paper", ["train paper"]), "recommended": ("recommended", ["fit", "train recommended"]),
             "+copies": ("uncentred", ["fit", "train recommended"]), "fit-alone": ("fitted", ["fit"])}


def from_eval(eval_out: Path, row: str, seed: int) -> dict:
    """``row`` as make eval ran it for ``seed``: its predictions, and its wall time summed from
    make eval's step times (CPU time is not recorded there)."""
    slug, steps = EVAL_ROWS[row]
    work = eval_out / f"seed{seed}"
    timings = json.loads((eval_out / "results.json").read_text())["timings"]
    names = [f"s{seed} {s}" for s in steps] + [f"s{seed} predict {slug} {split}" for split in READINGS]
    description, fit_options, train_options, budget = ROWS[row]
    return {"row": row, "description": description, "fit": fit_options, "train": train_options, "budget": vars(budget),
            "seconds": {"wall": round(sum(timings[n] for n in names), 1), "cpu": None}, "from": str(eval_out),
            "predictions": {split: str(work / f"{slug}-{split}.pt") for split in READINGS}}


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fitted(step: Step, out: Path, original: Path, corpus: Path, options: list[str], seed: int) -> tuple[Path, dict]:
    """defemb-fit with ``options``, run once for every row that starts from it: its checkpoint, and its
    cost when an earlier row made it (zero when made now: the row's own clock counts it)."""
    name = "_".join(o.strip("-") for o in options) or "default"
    fit, cost = out / "fits" / f"{name}.pt", out / "fits" / f"{name}.cost.json"
    if cost.is_file():
        return fit, json.loads(cost.read_text())
    fit.parent.mkdir(exist_ok=True)
    wall, cpu = time.perf_counter(), child_cpu_seconds()
    step.run(f"fit {name}", [BIN / "defemb-fit", "--pretrained-checkpoint", original / "model.pt", "--corpus",
                             corpus, "--out", fit, "--seed", seed, "--no-progress", *options], show=2)
    cost.write_text(json.dumps({"wall": time.perf_counter() - wall, "cpu": child_cpu_seconds() - cpu}))
    return fit, {"wall": 0.0, "cpu": 0.0}


def run_row(step: Step, out: Path, original: Path, corpus: Path, row: str, seed: int) -> dict:
    """One row's definition model and predictions; its cost counts the fit it starts from."""
    description, fit_options, train_options, budget = ROWS[row]
    work = out / "work" / row
    work.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), child_cpu_seconds()
    checkpoint, start, fit_cost = None, [], {"wall": 0.0, "cpu": 0.0}
    if fit_options is not None:
        fit, fit_cost = fitted(step, out, original, corpus, fit_options, seed)
        checkpoint, start = fit, ["--projection-init-from", fit]
    if train_options is not None:
        recipe = PAPER if row == "paper" else RECOMMENDED
        recipe = type(recipe)(name=row, description=description, train=tuple(train_options))
        step.run(f"{row} train", definition_cloze_cmd(
            corpus, original / "model.pt", work / "checkpoints", arch="defemb_roberta", recipe=recipe, budget=budget,
            seed=seed, extra=[*start, "--disable-validation", "--no-save-optimizer-state", "--log-interval", "100"]),
            show=1)
        checkpoint = work / "checkpoints" / "checkpoint_last.pt"
    predictions = {}
    for split in READINGS:
        predictions[split] = work / f"{split}.pt"
        step.run(f"{row} predict {split}", [
            BIN / "defemb-predict", "--checkpoint", checkpoint, "--corpus", corpus, "--splits", split,
            "--token-ids", corpus / "holdout_ids.txt", "--out", predictions[split], "--device", "cpu", "--no-progress"])
    # a fit made for an earlier row is counted again: each row's cost is what building it alone costs
    seconds = {k: round(v + fit_cost[k], 1)
               for k, v in (("wall", time.perf_counter() - wall), ("cpu", child_cpu_seconds() - cpu))}
    return {"row": row, "description": description, "fit": fit_options, "train": train_options, "budget": vars(budget),
            "seconds": seconds, "predictions": {k: str(v) for k, v in predictions.items()}}


def score(out: Path, original: Path, corpus: Path, results: dict, seed: int) -> dict:
    """Every row's predictions ranked as defemb-analyze reconstruction ranks them."""
    from fairseq_defemb.analysis.reconstruction import corpus_split_without, reconstruction_report
    from fairseq_defemb.surgery.checkpoint import read_embedding_matrix

    predictions = {f"{row} | {READINGS[split]}": path for row, r in results.items() for split, path in r["predictions"].items()}
    report = reconstruction_report(matrix=read_embedding_matrix(original / "model.pt").numpy(), corpus_dir=corpus,
                                   predictions=predictions, split_without=corpus_split_without(
                                       corpus, wordpiece_vocab=str(minilm_dir() / "vocab.txt")), seed=seed)
    return {k: v for k, v in report.items() if k != "per_token"}


def table(results: dict, report: dict) -> str:
    lines = ["| row | change | paper prompt: MRR / hits@10 / median rank | definition only: MRR / median rank | "
             "wall s | CPU s |", "|---|---|---:|---:|---:|---:|"]
    for row, r in results.items():
        p = report["methods"][f"{row} | paper prompt"]["all"]
        d = report["methods"][f"{row} | definition only"]["all"]
        lines.append(f"| {row} | {r['description']} | {p['mrr']:.3f} / {p['hits@10']:.2f} / {p['median_rank']:.0f} | "
                     f"{d['mrr']:.3f} / {d['median_rank']:.0f} | {r['seconds']['wall']:.0f} | "
                     + ("make eval's run |" if r["seconds"]["cpu"] is None else f"{r['seconds']['cpu']:.0f} |"))
    for name in report["baselines"]:
        m = report["methods"][name]["all"]
        lines.append(f"| {name} | baseline (no definition model) | {m['mrr']:.3f} / {m['hits@10']:.2f} / "
                     f"{m['median_rank']:.0f} | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="working and output folder (kept: a later run resumes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--eval-out", type=Path, default=None,
                        help="make eval's output folder: its model and --seed's corpus are used, and the rows it ran "
                        f"({', '.join(EVAL_ROWS)}) are taken from it")
    args = parser.parse_args(argv)
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    step = Step(out)
    original, corpus = out / "original", out / "definitions"
    if args.eval_out:
        original, corpus = args.eval_out / "original", args.eval_out / f"seed{args.seed}" / "definitions"
        if not (corpus / "corpus.json").is_file():
            parser.error(f"--eval-out {args.eval_out}: no corpus for seed {args.seed} ({corpus}/corpus.json)")
    if not (original / "model.pt").is_file():
        step.run("convert", [BIN / "defemb-convert-hf", "--model-dir", minilm_dir(), "--out", original])
    if not (corpus / "corpus.json").is_file():
        step.run("corpus", [BIN / "defemb-corpus", "--source", "gcide,numbers", "--vocab", original / "dict.txt",
                            "--bpe", "wordpiece", "--wordpiece-vocab", minilm_dir() / "vocab.txt", "--lowercase",
                            "--max-prompt-tokens", "32", "--valid-size", "2000", "--holdout", "200", "--workers", "2",
                            "--seed", args.seed, "--out", corpus, "--no-progress", *RECOMMENDED.corpus_flags()])
    results = {}
    for row in args.rows:
        done = out / "rows" / f"{row}.json"
        if args.eval_out and row in EVAL_ROWS:
            done.write_text(json.dumps(from_eval(args.eval_out, row, args.seed), indent=2) + "\n")
        elif not done.is_file():
            done.write_text(json.dumps(run_row(step, out, original, corpus, row, args.seed), indent=2) + "\n")
            for checkpoint in (out / "work" / row / "checkpoints").glob("*.pt"):
                checkpoint.unlink()  # whole models: the predictions are what is kept
        results[row] = json.loads(done.read_text())
    report = score(out, original, corpus, results, args.seed)
    (out / "ladder.json").write_text(json.dumps({"seed": args.seed, "rows": results, "report": report}, indent=2) + "\n")
    (out / "ladder.md").write_text(table(results, report))
    print(table(results, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
