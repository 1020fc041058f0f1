#!/usr/bin/env python
"""The ladder behind the recommended recipe: one change at a time, each measured on held-out tokens.

``make eval``'s setting (all-MiniLM-L6-v2, GCIDE + spelled-out numbers, prompts cut to 32 tokens,
200 held-out frequent and medium tokens), one seed per run. A row is a definition model built with
the console commands a user runs (``defemb-fit``, ``fairseq-train --task definition_cloze``), read
by ``defemb-predict`` on the held-out prompts (the paper's prompt, and the definition only) and
ranked by ``fairseq_defemb.analysis.reconstruction``; its cost is the wall and CPU seconds of its
own steps. The first rows climb from the paper as printed to the recommended recipe; the others
change one thing of the recommended recipe. Every row trains at make eval's budget, but for what the
row itself changes (``--updates`` and ``--float32`` set another: the 1,000-update float32 rows of
docs/definition-model.md ran with ``--updates 1000 --float32``). Each row's result is kept in
``--out``/rows, so a run that stops resumes where it stopped (a row made at another budget is made
again); ``--out``/ladder.md and ladder.json hold the table.
With ``--eval-out``, the ladder reads ``make eval``'s converted model and corpus of the same seed and
takes the rows ``make eval`` ran (paper, +top-4-layers, recommended, fit-alone) from its predictions and step times
instead of running them again.
With ``--max-prompt-tokens N`` beside it, the rows read a corpus of the same sources and held-out tokens with
prompts cut to N tokens instead, every row trained.

    python examples/definition_ladder.py --out ladder-s1 --seed 1
    python examples/definition_ladder.py --out ladder-s1 --seed 1 --eval-out eval-out --rows +ls +retrieval
    python examples/definition_ladder.py --out ladder64-s1 --seed 1 --eval-out eval-out --max-prompt-tokens 64 --rows recommended
"""
import argparse
import json
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from fairseq_defemb.recipes import PAPER, RECOMMENDED, Budget, Recipe, short_hash

from demo import minilm_dir
from demo_support import BIN, Step, definition_cloze_cmd
from eval import BUDGETS

BUDGET = BUDGETS["full"]["train"]  # make eval's: its rows and the ladder's are one training
READINGS = {"heldout": "paper prompt", "heldout_defonly": "definition only"}
RETRIEVAL = ["--retrieval-weight", "1", "--retrieval-temperature", "0.05"]
STATE = ["--projection-input", "state"]  # W reads h_{g(k)} alone (Eq. 4)
PROMPT_MEAN = ["--projection-input", "state+prompt-mean"]  # ... and the prompt's mean state beside it
ENCODER = "defemb_roberta"  # every row trains MiniLM, an encoder
FIT, TRAIN = RECOMMENDED.fit_flags(), RECOMMENDED.train_options(ENCODER)
ALL_LAYERS = list(RECOMMENDED.train)  # the recommended training with every layer trained (no --train-layers)
# rows read without the centring (defemb-predict's option: it changes no training step, so a row that
# differs from another only by it reads the same checkpoint): the climb up to the top-layers training,
# and the rows measured against an uncentred recipe
RAW = ["--prediction-mean", "raw"]
assert TRAIN == [*ALL_LAYERS, *RECOMMENDED.encoder_train], "the rows below take the recommended recipe's options apart"
assert ALL_LAYERS[:len(RETRIEVAL)] == RETRIEVAL, "the rows below change the recommended recipe's options by position"


def top(layers: int) -> list[str]:
    """The recommended training with W and the encoder's top ``layers`` layers trained."""
    return [*ALL_LAYERS, "--train-layers", str(layers)]


@dataclass(frozen=True)
class Row:
    description: str
    fit: list | None  # defemb-fit options, or None: no fit
    train: list | None  # fairseq-train options, or None: the fit alone
    budget: dict = field(default_factory=dict)  # what the row changes of the run's Budget
    read: list = field(default_factory=list)  # defemb-predict options


ROWS = {
    "paper": Row("the paper as printed: Eq. 5 alone from the authors' W, the paper's prompts", None,
                 PAPER.train_options(ENCODER)),
    "+ls": Row("+ W from least squares (defemb-fit: headword reads, lambda on validation)",
               ["--skip-definition-only-copies", *STATE], ["--skip-definition-only-copies"], read=RAW),
    "+retrieval": Row("+ the retrieval term (InfoNCE over all rows, weight 1, temperature 0.05)",
                      ["--skip-definition-only-copies", *STATE], ["--skip-definition-only-copies", *RETRIEVAL], read=RAW),
    "+copies": Row("+ the definition-only copies in the corpus", FIT, ALL_LAYERS, read=RAW),
    "+top-4-layers": Row("+ W and the encoder's top 4 layers trained, the 2 under them frozen (--train-layers 4)",
                         FIT, TRAIN, read=RAW),
    "recommended": Row("+ rows centred on the pretrained rows' mean (--prediction-mean rows): the recommended recipe",
                       FIT, TRAIN),
    "all-layers": Row("recommended, every layer trained (as +copies, its rows centred)", FIT, ALL_LAYERS),
    "fit-alone": Row("recommended, its fitted W alone (no training)", FIT, None),
    "prompt-mean": Row("all-layers, W reading the prompt's mean state beside the headword's (fit and training)",
                       PROMPT_MEAN, [*ALL_LAYERS, *PROMPT_MEAN]),
    "fit-alone-prompt-mean": Row("the fitted W alone, reading the prompt's mean state too (defemb-fit's default)",
                                 PROMPT_MEAN, None),
    "fit-every": Row("recommended, W fitted on every headword subword, not the headword as written",
                     [*FIT, "--positions", "every"], TRAIN),
    "random-w": Row("all-layers, from nn.Linear's random W (no fit)", None, ["--projection-init", "random", *ALL_LAYERS]),
    "mask-everywhere": Row("all-layers, --mask-headword-everywhere (no copy of the headword in its definition)", FIT,
                           [*ALL_LAYERS, "--mask-headword-everywhere"]),
    "temperature-0.1": Row("+copies, retrieval temperature 0.1", FIT,
                           ["--retrieval-weight", "1", "--retrieval-temperature", "0.1", *ALL_LAYERS[len(RETRIEVAL):]],
                           read=RAW),
    "weight-0.3": Row("all-layers, retrieval weight 0.3", FIT,
                      ["--retrieval-weight", "0.3", "--retrieval-temperature", "0.05", *ALL_LAYERS[len(RETRIEVAL):]]),
    "lr-1e-3": Row("+copies, peak learning rate 1e-3", FIT, ALL_LAYERS, {"lr": 1e-3}, read=RAW),
    "mask-always": Row("+copies, headword subwords always <mask> (not 50/25/25)", FIT,
                       [*ALL_LAYERS, "--mask-prob", "1", "--random-token-prob", "0"], read=RAW),
    "all-layers-2000": Row("all-layers, 2,000 updates", FIT, ALL_LAYERS, {"updates": 2000}),
    "linear-decay": Row("all-layers, the rate falling linearly from 5e-4 to 0 after the warm-up (not inverse sqrt)",
                        FIT, ALL_LAYERS, {"schedule": "linear"}),
    "top-1-layer": Row("recommended, W and the encoder's top layer trained, the 5 under it frozen",
                       FIT, top(1)),
    "top-2-layers": Row("recommended, W and the encoder's top 2 layers trained, the 4 under them frozen",
                        FIT, top(2)),
    "+top-2-layers": Row("+copies, W and the encoder's top 2 layers trained, the 4 under them frozen",
                         FIT, top(2), read=RAW),
    "top-3-layers": Row("recommended, W and the encoder's top 3 layers trained, the 3 under them frozen",
                        FIT, top(3)),
    "1000-updates": Row("recommended, 1,000 updates", FIT, TRAIN, {"updates": 1000}),
    "2000-updates": Row("recommended, 2,000 updates", FIT, TRAIN, {"updates": 2000}),
    "4000-updates": Row("recommended, 4,000 updates", FIT, TRAIN, {"updates": 4000}),
    "float32": Row("recommended, every product in float32 (no --bf16-autocast)", FIT, TRAIN,
                   {"mixed_precision": False}),
    "temperature-0.03": Row("recommended, retrieval temperature 0.03", FIT,
                            ["--retrieval-weight", "1", "--retrieval-temperature", "0.03", *TRAIN[len(RETRIEVAL):]]),
    "weight-3": Row("recommended, retrieval weight 3", FIT,
                    ["--retrieval-weight", "3", "--retrieval-temperature", "0.05", *TRAIN[len(RETRIEVAL):]]),
    "w-alone-trained": Row("recommended, W alone trained (the encoder frozen)", FIT,
                           top(0)),
    "dropout-0": Row("recommended, no dropout in the encoder (--dropout 0 --attention-dropout 0)", FIT,
                     [*TRAIN, "--dropout", "0", "--attention-dropout", "0"]),
    "dropout-0-weight-3": Row("recommended, no dropout in the encoder and retrieval weight 3", FIT,
                              ["--retrieval-weight", "3", "--retrieval-temperature", "0.05", *TRAIN[len(RETRIEVAL):],
                               "--dropout", "0", "--attention-dropout", "0"]),
}


# make eval's runs of four rows: the slug of their prediction files, and the steps that built them
EVAL_ROWS = {"paper": ("paper", ["train paper"]), "recommended": ("recommended", ["fit", "train recommended"]),
             "+top-4-layers": ("uncentred", ["fit", "train recommended"]), "fit-alone": ("fitted", ["fit"])}


def from_eval(eval_out: Path, row: str, seed: int, budget: Budget) -> dict:
    """``row`` as make eval ran it for ``seed``: its predictions, and its wall time summed from
    make eval's step times (CPU time is not recorded there)."""
    slug, steps = EVAL_ROWS[row]
    work = eval_out / f"seed{seed}"
    timings = json.loads((eval_out / "results.json").read_text())["timings"]
    names = [f"s{seed} {s}" for s in steps] + [f"s{seed} predict {slug} {split}" for split in READINGS]
    spec = ROWS[row]
    return {"row": row, "description": spec.description, "fit": spec.fit, "train": spec.train, "read": spec.read,
            "budget": vars(budget), "seconds": {"wall": round(sum(timings[n] for n in names), 1), "cpu": None},
            "from": str(eval_out), "predictions": {split: str(work / f"{slug}-{split}.pt") for split in READINGS}}


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def once(out: Path, name: str, make) -> tuple[Path, dict]:
    """``make(path)`` run once for every row that needs ``path`` (a fit or a training): the path, and
    its cost when an earlier row made it (zero when made now: the row's own clock counts it)."""
    path = out / name
    cost = path.with_suffix(".cost.json")
    if cost.is_file() and path.exists():
        return path, json.loads(cost.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), child_cpu_seconds()
    make(path)
    cost.write_text(json.dumps({"wall": time.perf_counter() - wall, "cpu": child_cpu_seconds() - cpu}))
    return path, {"wall": 0.0, "cpu": 0.0}


def run_row(step: Step, out: Path, original: Path, corpus: Path, row: str, seed: int, base: Budget) -> dict:
    """One row's definition model and predictions, trained at ``base`` with the row's changes; its
    cost counts the fit and training it reads, whichever row made them."""
    spec = ROWS[row]
    budget = replace(base, **spec.budget)
    work = out / "work" / row
    work.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), child_cpu_seconds()
    checkpoint, start, costs = None, [], []
    if spec.fit is not None:
        fit_name = "_".join(o.strip("-") for o in spec.fit) or "default"
        checkpoint, cost = once(out / "fits", f"{fit_name}.pt", lambda path: step.run(f"fit {fit_name}", [
            BIN / "defemb-fit", "--pretrained-checkpoint", original / "model.pt", "--corpus", corpus, "--out", path,
            "--seed", seed, "--no-progress", *spec.fit], show=2))
        start, costs = ["--projection-init-from", checkpoint], [cost]
    if spec.train is not None:
        recipe = Recipe(name=row, description=spec.description, train=tuple(spec.train))
        key = short_hash((spec.fit, spec.train, vars(budget)))
        save_dir, cost = once(out / "trained", key, lambda path: step.run(f"{row} train", definition_cloze_cmd(
            corpus, original / "model.pt", path, arch=ENCODER, recipe=recipe, budget=budget, seed=seed,
            extra=[*start, "--disable-validation", "--no-save-optimizer-state", "--log-interval", "100"]), show=1))
        checkpoint, costs = save_dir / "checkpoint_last.pt", [*costs, cost]
    predictions = {}
    for split in READINGS:
        predictions[split] = work / f"{split}.pt"
        step.run(f"{row} predict {split}", [
            BIN / "defemb-predict", "--checkpoint", checkpoint, "--corpus", corpus, "--splits", split,
            "--token-ids", corpus / "holdout_ids.txt", "--out", predictions[split], "--device", "cpu", "--no-progress",
            *spec.read])
    # what an earlier row made is counted again: each row's cost is what building it alone costs
    seconds = {k: round(v + sum(c[k] for c in costs), 1)
               for k, v in (("wall", time.perf_counter() - wall), ("cpu", child_cpu_seconds() - cpu))}
    return {"row": row, "description": spec.description, "fit": spec.fit, "train": spec.train, "read": spec.read,
            "budget": vars(budget), "seconds": seconds, "predictions": {k: str(v) for k, v in predictions.items()}}


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


def made_for(result: dict) -> tuple[dict | None, str | None]:
    """The budget and corpus a kept row was made at: one made at others is made again."""
    return result.get("budget"), result.get("corpus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="working and output folder (kept: a later run resumes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--eval-out", type=Path, default=None,
                        help="make eval's output folder: its model and --seed's corpus are used, and the rows it ran "
                        f"({', '.join(EVAL_ROWS)}) are taken from it; every row trains at its budget")
    parser.add_argument("--updates", type=int, default=None,
                        help=f"updates of every row's training (default: make eval's, {BUDGET.updates}; a row that "
                        "sets its own keeps it)")
    parser.add_argument("--float32", action="store_true",
                        help="every product in float32 (default: make eval's, bfloat16 where the CPU has it)")
    parser.add_argument("--max-prompt-tokens", type=int, default=None,
                        help="with --eval-out: a corpus of its own, prompts cut to this many tokens (make eval's: "
                        f"{BUDGETS['full']['prompt_tokens']}), holding out make eval's held-out tokens of --seed; "
                        "every row is then trained, none taken from make eval")
    args = parser.parse_args(argv)
    if args.eval_out and (args.updates is not None or args.float32):
        parser.error("--eval-out trains every row at make eval's budget: drop --updates and --float32")
    if args.max_prompt_tokens is not None and not args.eval_out:
        parser.error("--max-prompt-tokens holds out make eval's tokens: give --eval-out")
    base = replace(BUDGET, **({} if args.updates is None else {"updates": args.updates}),
                   **({"mixed_precision": False} if args.float32 else {}))
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    step = Step(out)
    original, corpus = out / "original", out / "definitions"
    holdout = ["--holdout", "200"]
    prompt_tokens = args.max_prompt_tokens or BUDGETS["full"]["prompt_tokens"]
    if args.eval_out:
        original, corpus = args.eval_out / "original", args.eval_out / f"seed{args.seed}" / "definitions"
        if not (corpus / "corpus.json").is_file():
            parser.error(f"--eval-out {args.eval_out}: no corpus for seed {args.seed} ({corpus}/corpus.json)")
        base = Budget(**json.loads((args.eval_out / "results.json").read_text())["budget"]["train"])
        if args.max_prompt_tokens is not None:
            holdout, corpus = ["--holdout-ids", corpus / "holdout_ids.txt"], out / f"definitions-{prompt_tokens}"
    if not (original / "model.pt").is_file():
        step.run("convert", [BIN / "defemb-convert-hf", "--model-dir", minilm_dir(), "--out", original])
    if not (corpus / "corpus.json").is_file():
        step.run("corpus", [BIN / "defemb-corpus", "--source", "gcide,numbers", "--vocab", original / "dict.txt",
                            "--bpe", "wordpiece", "--wordpiece-vocab", minilm_dir() / "vocab.txt", "--lowercase",
                            "--max-prompt-tokens", prompt_tokens, "--valid-size", "2000", *holdout, "--workers", "2",
                            "--seed", args.seed, "--out", corpus, "--no-progress", *RECOMMENDED.corpus_flags()])
    results = {}
    for row in args.rows:
        done = out / "rows" / f"{row}.json"
        budget = vars(replace(base, **ROWS[row].budget))
        if args.eval_out and row in EVAL_ROWS and args.max_prompt_tokens is None:
            done.write_text(json.dumps(from_eval(args.eval_out, row, args.seed, base), indent=2) + "\n")
        elif not done.is_file() or made_for(json.loads(done.read_text())) != (budget, str(corpus)):
            result = run_row(step, out, original, corpus, row, args.seed, base)
            done.write_text(json.dumps({**result, "corpus": str(corpus)}, indent=2) + "\n")
        results[row] = json.loads(done.read_text())
    for trained in (out / "trained").glob("*"):
        if trained.is_dir():  # whole models, read by every row that needs them: the predictions are what is kept
            shutil.rmtree(trained)
    report = score(out, original, corpus, results, args.seed)
    (out / "ladder.json").write_text(json.dumps({"seed": args.seed, "rows": results, "report": report}, indent=2) + "\n")
    (out / "ladder.md").write_text(table(results, report))
    print(table(results, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
