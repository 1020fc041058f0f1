#!/usr/bin/env python
"""``make eval``: does a definition give a token its embedding? Held-out reconstruction on 2 CPU cores.

all-MiniLM-L6-v2 is converted to a stock fairseq RoBERTa (as ``make demo`` does); ``defemb-corpus
--holdout`` holds out frequent and medium tokens whose pretrained rows are good and routes every
prompt with one of them in a headword span to a prediction-only split; ``definition_cloze`` trains
without them; at three training lengths ``defemb-predict`` predicts the held-out tokens from their
definitions (the paper's prompt, and the definition only) and ``defemb-analyze reconstruction``
ranks the true rows against the initialisers people use today (mean row, definition mean, subword,
random). Every step is the console command a user would run; everything lands atomically in
``--out`` (summary.md, results.json, budget_curve.png, logs, the per-budget reports).
"""
import json
import shutil
import sys
import time
from pathlib import Path

from fairseq_defemb.atomic_io import atomic_output_dir

from demo import minilm_dir
from demo_support import BIN, Step, definition_cloze_cmd, parse_demo_args, training_curve

# CPU budgets. Each training run has a fixed warm-up: inverse_sqrt's rate does not depend on
# --max-update, so the model after 80 updates of the 1,000-update run is the 80-update model, and a
# curve costs one run, resumed from checkpoint_last at each length. On 2 quiet cores a 1,024-token
# update takes ~0.5 s, so the two runs to 1,000 updates are ~20 of the eval's ~30 minutes.
BUDGETS = {
    "full": {"prompts": 12000, "valid": 300, "holdout": 200, "updates": [80, 300, 1000], "warmup": 25,
             "max_tokens": 1024, "prompt_tokens": 32, "lr": 5e-4, "fit_samples": 10000},
    "ci": {"prompts": 300, "valid": 20, "holdout": 12, "updates": [2, 4, 6], "warmup": 2,
           "max_tokens": 512, "prompt_tokens": 24, "lr": 5e-4, "fit_samples": 100},
}
SYSTEM = "DefinitionEMB"
ABLATION = "DefinitionEMB, definition only"
WARM = "DefinitionEMB, least-squares W"
FITTED = "fitted W (frozen encoder)"
FITTED_ABLATION = "fitted W, definition only"
# The paper's training, and the same from W fitted by least squares on the frozen encoder.
# The warm start and the definition-only ablation are read at the largest length only (the CPU budget).
RUNS = (SYSTEM, WARM)


def train_cmd(work: Path, original: Path, save_dir: Path, budget: dict, updates: int, seed: int, extra: list) -> list:
    """definition_cloze as the paper trains it, validated and saved at ``updates`` (a later length resumes)."""
    return definition_cloze_cmd(work / "definitions", original / "model.pt", save_dir, arch="defemb_roberta",
                                lr=budget["lr"], warmup=budget["warmup"], max_tokens=budget["max_tokens"], updates=updates,
                                seed=seed, extra=["--validate-interval-updates", updates, "--save-interval-updates", updates,
                                                  "--keep-interval-updates", "1",
                                                  "--log-interval", max(1, budget["updates"][-1] // 100), *extra])


def predict(step: Step, work: Path, checkpoint: Path, split: str, out: Path, name: str) -> Path:
    step.run(name, [BIN / "defemb-predict", "--checkpoint", checkpoint, "--corpus", work / "definitions",
                    "--splits", split, "--token-ids", work / "definitions" / "holdout_ids.txt", "--out", out,
                    "--max-tokens", "4096", "--device", "cpu", "--no-progress"], show=1)
    return out


def slug(name: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def main(argv: list[str] | None = None) -> int:
    args, budget = parse_demo_args(__doc__, "eval-out", BUDGETS, argv, extra_train_args=True)
    extra = args.train_args.split() if args.train_args else []
    started = time.perf_counter()
    print(f"Held-out reconstruction ({args.budget} budget) -> {args.out}")
    print(f"  choices: GCIDE + spelled-out numbers; {budget['holdout']} held-out tokens (frequent + medium, seed "
          f"{args.seed}); {budget['prompts']:,} training prompts sampled toward rare tokens, cut to "
          f"{budget['prompt_tokens']} tokens; two training runs ({', '.join(RUNS)}) of <= {budget['max_tokens']} "
          f"tokens per update, lr {budget['lr']} inverse_sqrt after {budget['warmup']} warm-up updates, the first read "
          f"at {', '.join(map(str, budget['updates']))} updates, the second at the last; W fitted on {budget['fit_samples']:,} training prompts"
          + (f"; extra training options: {' '.join(extra)}" if extra else ""))
    with atomic_output_dir(args.out, overwrite=True) as work:
        step = Step(work, timeout=args.step_timeout or None)
        model_dir = minilm_dir()
        original = work / "original"
        step.run("convert", [BIN / "defemb-convert-hf", "--model-dir", model_dir, "--out", original])
        step.run("corpus", [
            BIN / "defemb-corpus", "--source", "gcide,numbers", "--vocab", original / "dict.txt", "--bpe", "wordpiece",
            "--wordpiece-vocab", model_dir / "vocab.txt", "--lowercase", "--max-prompt-tokens", budget["prompt_tokens"],
            "--limit", budget["prompts"], "--valid-size", budget["valid"], "--holdout", budget["holdout"],
            "--workers", "2", "--seed", args.seed, "--out", work / "definitions", "--no-progress",
        ], show=2)
        step.run("fit", [BIN / "defemb-fit", "--pretrained-checkpoint", original / "model.pt", "--corpus",
                         work / "definitions", "--out", work / "fit.pt", "--samples", budget["fit_samples"],
                         "--seed", args.seed, "--no-progress"], show=5)
        fitted = {FITTED: predict(step, work, work / "fit.pt", "heldout", work / "fitted_w.pt", "predict fitted W"),
                  FITTED_ABLATION: predict(step, work, work / "fit.pt", "heldout_defonly", work / "fitted_w_definition_only.pt",
                                           "predict fitted W definition only")}
        logs, reports = {name: [] for name in RUNS}, {}
        for updates in budget["updates"]:
            predictions = {}
            for name in RUNS:
                if name != SYSTEM and updates != budget["updates"][-1]:
                    continue  # one run straight to the largest length: same model, fewer start-ups
                save_dir = work / "checkpoints" / slug(name)
                # the warm start begins from the fitted-W baseline's own W (fit.pt)
                options = ["--projection-init-from", work / "fit.pt"] if name == WARM else []
                logs[name].append(step.run(f"train {slug(name)} {updates}", train_cmd(
                    work, original, save_dir, budget, updates, args.seed, [*options, *extra]), show=2))
                largest = updates == budget["updates"][-1]
                # a copy: fairseq rewrites checkpoint_last.pt in place when the next length resumes from it
                checkpoint = save_dir / f"after_{updates}.pt"
                shutil.copyfile(save_dir / "checkpoint_last.pt", checkpoint)
                predictions[name] = predict(step, work, checkpoint, "heldout", work / f"{slug(name)}_{updates}.pt",
                                            f"predict {slug(name)} {updates}")
                if name == SYSTEM and largest:
                    predictions[ABLATION] = predict(step, work, checkpoint, "heldout_defonly",
                                                    work / f"{slug(ABLATION)}_{updates}.pt",
                                                    f"predict {slug(ABLATION)} {updates}")
                checkpoint.unlink()  # weights and Adam state; the predictions are what is kept
            step.run(f"reconstruction {updates}", [
                BIN / "defemb-analyze", "reconstruction", "--checkpoint", original / "model.pt",
                "--corpus", work / "definitions", "--predictions", *(f"{n}={p}" for n, p in predictions.items()),
                "--baseline-predictions", *(f"{n}={p}" for n, p in fitted.items()), "--system", SYSTEM,
                "--wordpiece-vocab", model_dir / "vocab.txt", "--seed", args.seed,
                "--out", work / f"reconstruction_{updates}",
            ], show=0)
            reports[updates] = json.loads((work / f"reconstruction_{updates}" / "report.json").read_text())
        shutil.rmtree(work / "checkpoints")
        (work / "fit.pt").unlink()  # a whole model; its predictions and fit.json are what is kept
        curves = {name: training_curve("".join(log)) for name, log in logs.items()}
        plot_budget_curve(reports, work / "budget_curve.png")
        write_summary(work, args, budget, extra, reports, curves, step.timings, time.perf_counter() - started)
    print(f"\ndone in {time.perf_counter() - started:.0f} s: {args.out}/summary.md")
    return 0


def plot_budget_curve(reports: dict, path: Path) -> None:
    """MRR on the held-out tokens against training updates; the initialisers as flat lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    updates = sorted(reports)
    last = reports[updates[-1]]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name in (SYSTEM, ABLATION, WARM):
        read = [u for u in updates if name in reports[u]["methods"]]
        ax.plot(read, [reports[u]["methods"][name]["all"]["mrr"] for u in read], "o-", label=name)
    for name in last["baselines"]:
        ax.axhline(last["methods"][name]["all"]["mrr"], ls="--", lw=1, color=f"C{2 + last['baselines'].index(name)}",
                   label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")  # the random initialiser's MRR is orders of magnitude below the rest
    ax.set_xlabel("definition_cloze updates")
    ax.set_ylabel("MRR of the true row (all rows, cosine)")
    ax.set_title(f"{last['num_tokens']} held-out MiniLM tokens, GCIDE definitions")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(work: Path, args, budget: dict, extra: list[str], reports: dict, curves: dict, timings: dict,
                  seconds: float) -> None:
    from fairseq_defemb.analysis.reconstruction import reconstruction_markdown

    updates = sorted(reports)
    last = reports[updates[-1]]
    rows = []
    for name in [SYSTEM, ABLATION, WARM, *last["baselines"]]:
        cells = [f"{reports[u]['methods'][name]['all']['mrr']:.4f}" if name in reports[u]["methods"] else "-"
                 for u in updates]
        m = last["methods"][name]["all"]
        rows.append(f"| {name} | {' | '.join(cells)} | {m['hits@1']:.3f} | {m['hits@10']:.3f} | {m['median_rank']:.0f} | "
                    f"{m['cosine']:.3f} |")
    tests = []
    for name, test in last["bootstrap"].items():
        b = test["reciprocal_rank"]
        tests.append(f"- {name}: {b['system_mean']:.4f} vs {last['best_baseline']} {b['baseline_mean']:.4f}, delta "
                     f"{b['delta']:+.4f}, 95% CI [{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}], p = {b['p_value']:.3f}")
    training = []
    for name, curve in curves.items():
        training.append(f"- {name}: train loss {curve['loss'][0]:.3f} -> {curve['loss'][-1]:.3f}, cosine to the pretrained "
                        f"rows {curve['cosine'][0]:.3f} -> {curve['cosine'][-1]:.3f} (train batches)"
                        + (f"; valid loss at each length {', '.join(f'{v:.3f}' for v in curve['valid_loss'])}"
                           if curve["valid_loss"] else ""))
    corpus = json.loads((work / "definitions" / "coverage.json").read_text())
    fit = json.loads((work / "fit.json").read_text())
    lines = [
        "# Held-out reconstruction on all-MiniLM-L6-v2 with GCIDE (CPU)", "",
        f"Budget `{args.budget}`, seed {args.seed}, {seconds:.0f} s in all"
        + (f", extra training options `{' '.join(extra)}`" if extra else "") + ". Every number comes from this run "
        "(`examples/eval.py`).", "",
        f"{last['num_tokens']} held-out tokens ({corpus['holdout']['groups']['frequent']} frequent, "
        f"{corpus['holdout']['groups']['medium']} medium; {corpus['holdout']['prompts']['heldout']:,} prompts kept out "
        f"of training); {corpus['splits']['train']:,} training prompts. MRR of the true row among all "
        f"{last['candidate_rows']:,} rows by cosine, at each training length:", "",
        "| initialiser | " + " | ".join(f"MRR @{u}" for u in updates) + " | hits@1 | hits@10 | median rank | cosine |",
        "|---|" + "---:|" * (len(updates) + 4), *rows, "",
        f"Hits, median rank and cosine at {updates[-1]} updates; the initialisers and the fitted W do not train, so "
        f"their MRR is the same at every length. Fitted W: ridge lambda {fit['lambda']:g} on "
        f"{fit['fit']['prompts']:,} training prompts.", "",
        f"Paired bootstrap of the reciprocal rank against the best baseline at {updates[-1]} updates:", "", *tests, "",
        "Training:", "", *training, "",
        "![budget curve](budget_curve.png)", "",
        f"## All groups at {updates[-1]} updates", "", reconstruction_markdown(last),
        "## Time per step (s)", "", "| step | s |", "|---|---:|", *(f"| {k} | {v} |" for k, v in timings.items()), "",
    ]
    (work / "summary.md").write_text("\n".join(lines))
    (work / "results.json").write_text(json.dumps({
        "budget": budget, "seed": args.seed, "train_args": extra, "seconds": seconds, "timings": timings,
        "curves": curves, "holdout": corpus["holdout"], "splits": corpus["splits"], "fit": fit,
        "reports": {str(u): {k: v for k, v in r.items() if k != "per_token"} for u, r in reports.items()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
