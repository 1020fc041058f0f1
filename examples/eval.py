#!/usr/bin/env python
"""``make eval``: what a definition gives a token, measured on held-out tokens, on 2 CPU cores.

all-MiniLM-L6-v2 is converted to a stock fairseq RoBERTa (as ``make demo`` does). For each of two
seeds, ``defemb-corpus --holdout`` holds out 200 frequent and medium tokens whose pretrained rows
are good and keeps every prompt that defines one out of training; two definition models are built
without them, each with the console commands a user runs:

* the **recommended** recipe (``fairseq_defemb.recipes.RECOMMENDED``): the corpus with its
  definition-only copies, ``defemb-fit``'s least-squares W, then training with Eq. 5 and the
  retrieval term; the fitted W alone (no training) is scored too;
* the **paper as printed** (``PAPER``): Eq. 5 alone from the authors' random W, on the paper's prompts.

``defemb-predict`` reads the held-out tokens three ways: the paper's prompt (the token's other forms
visible), the definition only (every form hidden, what a new word gets), and both prompts averaged
(what surgery reads from a recommended corpus, which holds each prompt and its definition-only copy); and
``defemb-analyze reconstruction`` ranks the true rows among all 30,522 next to the initialisers
people use today (mean row, definition mean, subword mean, random), with a paired bootstrap
against the best of them. Last, the new-word check: ``defemb-add-tokens`` adds words MiniLM does
not have (examples/new_words.tsv: definitions written for the check, and the words a reader would
call related) with every initialiser, and each new row's neighbours are searched for a related word.
Everything lands atomically in ``--out`` (summary.md, results.json, readings.png, logs).
"""
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.recipes import PAPER, RECOMMENDED, Budget

from demo import minilm_dir
from demo_support import BIN, Step, definition_cloze_cmd, parse_demo_args, training_curve

EXAMPLES = Path(__file__).resolve().parent
NEW_WORDS = EXAMPLES / "new_words.tsv"
# CPU budgets: prompts cut to 32 tokens (this 6-layer encoder trains the recommended recipe at ~2,800
# tokens/s on one quiet thread in bfloat16, ~1,700 in float32), 200 held-out tokens per seed, two
# training runs per seed.
BUDGETS = {
    "full": {"seeds": [1, 2], "valid": 2000, "holdout": 200, "prompt_tokens": 32, "fit_samples": 10000,
             "train": Budget(updates=2000, lr=5e-4, warmup=25, max_tokens=1024), "sources": "gcide,numbers", "limit": 0},
    # the test's: the spelled-out numbers alone make a corpus in seconds (GCIDE takes minutes to read)
    "ci": {"seeds": [1, 2], "valid": 20, "holdout": 12, "prompt_tokens": 24, "fit_samples": 100,
           "train": Budget(updates=4, lr=5e-4, warmup=2, max_tokens=512), "sources": "numbers", "limit": 0},
}
# a reading: the held-out splits defemb-predict reads. Surgery reads a recommended corpus, which holds
# every prompt twice (the paper's, and its definition-only copy), so its rows average the two.
READINGS = {"heldout": "paper prompt", "heldout_defonly": "definition only",
            "heldout,heldout_defonly": "both prompts (surgery's reading)"}
REC, FIT, PAPER_RUN = "recommended", "recommended W alone (defemb-fit, no training)", "paper as printed"
UNCENTRED = "recommended, rows not centred (--prediction-mean raw)"
FIT_CENTRED = "recommended W alone, rows centred (--prediction-mean rows)"
MODELS = (REC, UNCENTRED, FIT, FIT_CENTRED, PAPER_RUN)
SLUGS = {REC: "recommended", UNCENTRED: "uncentred", FIT: "fitted", FIT_CENTRED: "fitted-centred",
         PAPER_RUN: "paper"}  # file and step names
# checkpoints read a second time the other way (the trained model centres its rows, defemb-fit's does
# not): what the centring gives each
READ_AS = {UNCENTRED: (REC, ["--prediction-mean", "raw"]), FIT_CENTRED: (FIT, ["--prediction-mean", "rows"])}
INITS = {"DefinitionEMB, recommended": "defemb", "DefinitionEMB, paper as printed": "defemb",
         "DefinitionEMB, fitted W alone": "defemb", "subword mean": "subwords", "definition mean": "description-mean",
         "mean row": "mean"}


def name(model: str, split: str) -> str:
    return f"{model} | {READINGS[split]}"


def prediction_file(work: Path, model: str, split: str) -> Path:
    return work / f"{SLUGS[model]}-{split.replace(',', '+')}.pt"


def run_seed(step: Step, work: Path, original: Path, model_dir: Path, budget: dict, seed: int,
             threads: int | None = None) -> dict:
    """One seed's corpus, definition models, predictions, reconstruction report and new-word check,
    every command on ``threads`` torch threads (None: all)."""
    # one corpus serves both recipes: the paper's run leaves its definition-only copies out
    corpus = work / "definitions"
    step.run(f"s{seed} corpus", [
        BIN / "defemb-corpus", "--source", budget["sources"], "--vocab", original / "dict.txt", "--bpe", "wordpiece",
        "--wordpiece-vocab", model_dir / "vocab.txt", "--lowercase", "--max-prompt-tokens", budget["prompt_tokens"],
        "--valid-size", budget["valid"], "--holdout", budget["holdout"], "--limit", budget["limit"],
        "--workers", "2", "--seed", seed, "--out", corpus, "--no-progress", *RECOMMENDED.corpus_flags(),
    ], show=1, threads=threads)
    checkpoints = {FIT: work / "fit.pt"}
    step.run(f"s{seed} fit", [BIN / "defemb-fit", "--pretrained-checkpoint", original / "model.pt", "--corpus",
                              corpus, "--out", checkpoints[FIT], "--samples", budget["fit_samples"],
                              "--seed", seed, "--no-progress", *RECOMMENDED.fit_flags()], show=5, threads=threads)
    logs = {}
    for model, recipe in ((REC, RECOMMENDED), (PAPER_RUN, PAPER)):
        save_dir = work / "checkpoints" / recipe.name
        start = ["--projection-init-from", checkpoints[FIT]] if recipe.fitted_start else []
        logs[model] = step.run(f"s{seed} train {recipe.name}", definition_cloze_cmd(
            corpus, original / "model.pt", save_dir, arch="defemb_roberta", recipe=recipe, budget=budget["train"],
            seed=seed, extra=[*start, "--validate-interval-updates", budget["train"].updates, "--no-save-optimizer-state",
                              "--log-interval", max(1, budget["train"].updates // 20)]), show=2, threads=threads)
        checkpoints[model] = save_dir / "checkpoint_last.pt"
    predictions = {}
    for model in MODELS:
        checkpoint, options = READ_AS.get(model, (model, []))
        for split in READINGS:
            out = prediction_file(work, model, split)
            step.run(f"s{seed} predict {SLUGS[model]} {split}", [
                BIN / "defemb-predict", "--checkpoint", checkpoints[checkpoint], "--corpus", corpus, "--splits", split,
                "--token-ids", corpus / "holdout_ids.txt", "--out", out, "--device", "cpu", "--no-progress", *options],
                threads=threads)
            predictions[name(model, split)] = out
    step.run(f"s{seed} reconstruction", [
        BIN / "defemb-analyze", "reconstruction", "--checkpoint", original / "model.pt", "--corpus", corpus,
        "--predictions", *(f"{n}={p}" for n, p in predictions.items()), "--system", name(REC, "heldout"),
        "--wordpiece-vocab", model_dir / "vocab.txt", "--seed", seed, "--out", work / "reconstruction"], show=0,
        threads=threads)
    report = json.loads((work / "reconstruction" / "report.json").read_text())
    new_words = new_word_check(step, work, model_dir, {
        "DefinitionEMB, recommended": checkpoints[REC], "DefinitionEMB, paper as printed": checkpoints[PAPER_RUN],
        "DefinitionEMB, fitted W alone": checkpoints[FIT]}, f"s{seed} ", threads)
    curves = {model: training_curve(log) for model, log in logs.items()}
    fit = json.loads((work / "fit.json").read_text())
    shutil.rmtree(work / "checkpoints")
    (work / "fit.pt").unlink()  # whole models: their predictions and reports are what is kept
    return {"reconstruction": {k: v for k, v in report.items() if k != "per_token"}, "new_words": new_words,
            "curves": curves, "fit": {k: fit[k] for k in ("lambda", "fit", "valid", "seconds")},
            "holdout": json.loads((corpus / "coverage.json").read_text())["holdout"]}


def new_word_check(step: Step, work: Path, model_dir: Path, checkpoints: dict, prefix: str = "",
                   threads: int | None = None) -> dict:
    """The new words added by ``defemb-add-tokens`` with each initialiser of ``checkpoints`` (an INITS
    label -> its definition model, None for an initialiser that reads none), then each new row's best
    related rank."""
    from safetensors.numpy import load_file

    from fairseq_defemb.analysis.new_words import best_related_ranks, read_new_words, summary

    vocabulary = {line: i for i, line in enumerate((model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    words = read_new_words(NEW_WORDS, vocabulary)
    tsv = work / "new_words.tsv"
    tsv.write_text("".join(f"{w['word']}\t{w['pos']}\t{w['definition']}\n" for w in words), encoding="utf-8")
    results = {}
    for label, checkpoint in checkpoints.items():
        out = work / "new-words" / label.split(",")[-1].strip().replace(" ", "-")
        step.run(f"{prefix}new words {label}", [
            BIN / "defemb-add-tokens", "--hf-model", model_dir, "--words", tsv, "--init", INITS[label], "--out", out,
            "--device", "cpu", "--no-progress", *(["--definition-model", checkpoint] if checkpoint else [])],
            threads=threads)
        report = json.loads((out / "add_tokens.json").read_text())
        matrix = next(v for k, v in load_file(str(out / "model.safetensors")).items() if k.endswith("word_embeddings.weight"))
        rows_before = report["rows_before"]
        rows = matrix[[w["id"] for w in report["words"]]]
        specials = {i for t, i in vocabulary.items() if t.startswith("[") and t.endswith("]")}
        best = best_related_ranks(rows, matrix[:rows_before], [w["related"] for w in words], specials)
        results[label] = {**summary(best), "best_rank": dict(zip([w["word"] for w in words], best.tolist())),
                          "neighbours": {w["word"]: [n["token"] for n in w["neighbours"]] for w in report["words"]}}
    shutil.rmtree(work / "new-words")
    return results


def mean_over(seeds: dict, path) -> float:
    return float(np.mean([path(s) for s in seeds.values()]))


def main(argv: list[str] | None = None) -> int:
    args, budget = parse_demo_args(__doc__, "eval-out", BUDGETS, argv)
    started = time.perf_counter()
    print(f"Held-out reconstruction ({args.budget} budget, seeds {budget['seeds']}) -> {args.out}")
    with atomic_output_dir(args.out, overwrite=True) as work:
        step = Step(work, timeout=args.step_timeout or None)
        model_dir = minilm_dir()
        original = work / "original"
        step.run("convert", [BIN / "defemb-convert-hf", "--model-dir", model_dir, "--out", original])
        # The seeds side by side, one torch thread each: small matrices scale poorly across threads
        # (make demo-bart's fine-tuning runs gain 1.27x this way).
        threads = 1 if len(budget["seeds"]) > 1 else None
        for seed in budget["seeds"]:
            (work / f"seed{seed}").mkdir()
        # The initialisers that read no definition model give every seed the same rows: added once.
        without_model = new_word_check(step, work, model_dir, {label: None for label, init in INITS.items()
                                                                if init != "defemb"})
        pool = ThreadPoolExecutor(max_workers=len(budget["seeds"]))
        try:
            jobs = {seed: pool.submit(run_seed, step, work / f"seed{seed}", original, model_dir, budget, seed, threads)
                    for seed in budget["seeds"]}
            seeds = {seed: job.result() for seed, job in jobs.items()}
        finally:
            pool.shutdown(cancel_futures=True)  # a failed seed stops what has not started
        for result in seeds.values():
            result["new_words"].update(without_model)
        plot_readings(seeds, work / "readings.png")
        write_summary(work, args, budget, seeds, step.timings, time.perf_counter() - started)
    print(f"\ndone in {time.perf_counter() - started:.0f} s: {args.out}/summary.md")
    return 0


def plot_readings(seeds: dict, path: Path) -> None:
    """MRR of every method in each reading, the mean of the seeds with each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(seeds.values()))["reconstruction"]
    baselines = first["baselines"]
    fig, axes = plt.subplots(1, len(READINGS), figsize=(4.5 * len(READINGS), 3.6), sharey=True)
    for ax, split in zip(axes, READINGS):
        labels = [*MODELS, *baselines]
        keys = [name(m, split) for m in MODELS] + baselines
        values = [[s["reconstruction"]["methods"][k]["all"]["mrr"] for s in seeds.values()] for k in keys]
        ax.bar(range(len(keys)), [np.mean(v) for v in values], color=["C0", "C1", "C2"] + ["C7"] * len(baselines))
        for x, v in enumerate(values):
            ax.plot([x] * len(v), v, "k.", ms=4)
        ax.set_xticks(range(len(keys)), [label.replace(" (", "\n(") for label in labels], rotation=60, ha="right",
                      fontsize=7)
        ax.set_title(READINGS[split])
    axes[0].set_ylabel("MRR of the true row among all rows")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(work: Path, args, budget: dict, seeds: dict, timings: dict, seconds: float) -> None:
    first = next(iter(seeds.values()))["reconstruction"]
    baselines = first["baselines"]
    lines = [
        "# What a definition gives a token: held-out reconstruction on all-MiniLM-L6-v2 (CPU)", "",
        f"Budget `{args.budget}`, seeds {', '.join(map(str, seeds))}, {seconds / 60:.0f} min in all. Every number comes "
        "from this run (`examples/eval.py`). Per seed: "
        + "; ".join(f"seed {s}: {r['holdout']['groups']['frequent']} frequent + {r['holdout']['groups']['medium']} medium "
                    f"tokens held out ({r['holdout']['prompts']['heldout']:,} prompts)" for s, r in seeds.items())
        + f". Rank of the true row among all {first['candidate_rows']:,} rows by cosine (ties count against the "
        "prediction); the mean of the seeds, each seed's MRR in brackets. *Collapse*: the mean cosine of a method's "
        "predictions to their mean (1.0: one vector for every token). *Norm ratio*: |prediction| / |true row|.", "",
        f"Recipes: **recommended** = {RECOMMENDED.description}; **paper as printed** = {PAPER.description}; both "
        f"{budget['train'].updates} updates of <= {budget['train'].max_tokens} tokens at lr {budget['train'].lr:g} "
        f"({budget['train'].schedule}, {budget['train'].warmup} warm-up updates). The fitted W is the recommended recipe's start, "
        "scored alone.", "",
    ]
    for split, reading in READINGS.items():
        lines += [f"**{reading}**", "", "| method | MRR | hits@1 | hits@10 | hits@100 | median rank | cosine | collapse | "
                  "norm ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for label, key in [*((m, name(m, split)) for m in MODELS), *((b, b) for b in baselines)]:
            m = {k: mean_over(seeds, lambda s: s["reconstruction"]["methods"][key]["all"][k])
                 for k in ("mrr", "hits@1", "hits@10", "hits@100", "median_rank", "cosine", "norm_ratio")}
            per_seed = ", ".join(f"{s['reconstruction']['methods'][key]['all']['mrr']:.3f}" for s in seeds.values())
            collapse = mean_over(seeds, lambda s: s["reconstruction"]["collapse"][key])
            lines.append(f"| {label} | {m['mrr']:.3f} ({per_seed}) | {m['hits@1']:.3f} | {m['hits@10']:.3f} | "
                         f"{m['hits@100']:.3f} | {m['median_rank']:.0f} | {m['cosine']:.3f} | {collapse:.3f} | "
                         f"{m['norm_ratio']:.2f} |")
        lines.append("")
    lines += ["Paired bootstrap of the reciprocal rank against each seed's best baseline (1,000 resamples):", ""]
    for s, r in seeds.items():
        rec = r["reconstruction"]
        for key, test in rec["bootstrap"].items():
            b = test["reciprocal_rank"]
            lines.append(f"- seed {s}, {key}: {b['system_mean']:.4f} vs {rec['best_baseline']} {b['baseline_mean']:.4f}, "
                         f"delta {b['delta']:+.4f}, 95% CI [{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}], p = {b['p_value']:.3f}")
    lines += ["", "**The new-word check** (examples/new_words.tsv: "
              f"{next(iter(seeds.values()))['new_words']['mean row']['words']} words MiniLM does not have, definitions "
              "written for the check, and the in-vocabulary words a reader would call related): the best rank of a "
              "related word among the new row's neighbours (all rows but the specials, by cosine), per initialiser.", "",
              "| initialiser | median best rank | share with one in the top 10 | share with one first |", "|---|---:|---:|---:|"]
    for label in INITS:
        m = {k: mean_over(seeds, lambda s: s["new_words"][label][k]) for k in ("median_best_rank", "share_top10", "share_top1")}
        lines.append(f"| {label} | {m['median_best_rank']:.1f} | {m['share_top10']:.2f} | {m['share_top1']:.2f} |")
    example = next(iter(seeds.values()))["new_words"]
    lines += ["", "`covid`'s nearest existing tokens (first seed): " + "; ".join(
        f"{label}: {', '.join(example[label]['neighbours']['covid'])}" for label in INITS), ""]
    lines += ["Training:", ""]
    for s, r in seeds.items():
        for model, curve in r["curves"].items():
            if curve["eq5"]:
                lines.append(f"- seed {s}, {model}: train Eq. 5 {curve['eq5'][0]:.3f} -> {curve['eq5'][-1]:.3f}"
                             + (f"; valid Eq. 5 {curve['valid_eq5'][-1]:.3f}" if curve["valid_eq5"] else ""))
        fit = r["fit"]
        lines.append(f"- seed {s}, fitted W: lambda {fit['lambda']:g} on {fit['fit']['states']:,} headword reads; valid "
                     f"Eq. 5 mean target row {fit['valid']['mean_row']['loss']:.3f}, fitted W "
                     f"{fit['valid']['fitted_W']['loss']:.3f}")
    lines += ["", "![every reading](readings.png)", "", "## Time per step (s)", "", "| step | s |", "|---|---:|",
              *(f"| {k} | {v} |" for k, v in timings.items()), ""]
    (work / "summary.md").write_text("\n".join(lines))
    (work / "results.json").write_text(json.dumps({
        "budget": {**{k: v for k, v in budget.items() if k != "train"}, "train": vars(budget["train"])},
        "recipes": {"recommended": RECOMMENDED.description, "paper": PAPER.description}, "seconds": seconds,
        "timings": timings, "seeds": {str(s): r for s, r in seeds.items()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
