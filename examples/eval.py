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

from defemb.atomic_io import atomic_output_dir

from demo import minilm_dir
from demo_support import BIN, REPO, Step, parse_demo_args, training_curve

# CPU budgets. One training run with a fixed warm-up: inverse_sqrt's rate does not depend on
# --max-update, so the model after 300 updates of the 3,000-update run is the 300-update model, and
# the curve costs one run, resumed from checkpoint_last at each length. Sizes measured on this
# machine (README, "Held-out reconstruction"): prompts cut to 32 tokens, 1,024-token batches.
BUDGETS = {
    "full": {"prompts": 12000, "valid": 300, "holdout": 300, "updates": [300, 1000, 3000], "warmup": 100,
             "max_tokens": 1024, "prompt_tokens": 32, "lr": 5e-4},
    "ci": {"prompts": 300, "valid": 20, "holdout": 12, "updates": [2, 4, 6], "warmup": 2,
           "max_tokens": 512, "prompt_tokens": 24, "lr": 5e-4},
}
SYSTEM = "DefinitionEMB"
ABLATION = "DefinitionEMB, definition only"


def train_cmd(work: Path, original: Path, budget: dict, updates: int, seed: int, extra: list[str]) -> list:
    return [
        BIN / "fairseq-train", work / "definitions", "--user-dir", REPO / "fairseq_defemb",
        "--task", "definition_cloze", "--criterion", "mimic_mse", "--arch", "defemb_roberta",
        "--pretrained-checkpoint", original / "model.pt", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
        "--weight-decay", "0.01", "--lr", budget["lr"], "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", budget["warmup"], "--warmup-init-lr", "1e-7", "--max-tokens", budget["max_tokens"],
        "--max-update", updates, "--validate-interval-updates", updates, "--cpu", "--num-workers", "0",
        "--required-batch-size-multiple", "1", "--save-dir", work / "checkpoints", "--no-epoch-checkpoints",
        "--save-interval-updates", updates, "--keep-interval-updates", "1", "--log-format", "simple",
        "--log-interval", max(1, budget["updates"][-1] // 100), "--seed", seed, *extra,
    ]


def predict(step: Step, work: Path, checkpoint: Path, split: str, out: Path, name: str) -> None:
    step.run(name, [BIN / "defemb-predict", "--checkpoint", checkpoint, "--corpus", work / "definitions",
                    "--splits", split, "--token-ids", work / "definitions" / "holdout_ids.txt", "--out", out,
                    "--max-tokens", "4096", "--device", "cpu", "--no-progress"], show=1)


def main(argv: list[str] | None = None) -> int:
    args, budget = parse_demo_args(__doc__, "eval-out", BUDGETS, argv, extra_train_args=True)
    extra = args.train_args.split() if args.train_args else []
    started = time.perf_counter()
    print(f"Held-out reconstruction ({args.budget} budget) -> {args.out}")
    print(f"  choices: GCIDE + spelled-out numbers; {budget['holdout']} held-out tokens (frequent + medium, seed "
          f"{args.seed}); {budget['prompts']:,} training prompts sampled toward rare tokens, cut to "
          f"{budget['prompt_tokens']} tokens; one training run of <= {budget['max_tokens']} tokens per update, lr "
          f"{budget['lr']} inverse_sqrt after {budget['warmup']} warm-up updates, read at "
          f"{', '.join(map(str, budget['updates']))} updates" + (f"; extra training options: {' '.join(extra)}" if extra else ""))
    with atomic_output_dir(args.out, overwrite=True) as work:
        step = Step(work)
        model_dir = minilm_dir()
        original = work / "original"
        step.run("convert", [BIN / "defemb-convert-hf", "--model-dir", model_dir, "--out", original])
        step.run("corpus", [
            BIN / "defemb-corpus", "--source", "gcide,numbers", "--vocab", original / "dict.txt", "--bpe", "wordpiece",
            "--wordpiece-vocab", model_dir / "vocab.txt", "--lowercase", "--max-prompt-tokens", budget["prompt_tokens"],
            "--limit", budget["prompts"], "--valid-size", budget["valid"], "--holdout", budget["holdout"],
            "--workers", "2", "--seed", args.seed, "--out", work / "definitions", "--no-progress",
        ], show=2)
        logs, reports = [], {}
        for updates in budget["updates"]:
            logs.append(step.run(f"train {updates}", train_cmd(work, original, budget, updates, args.seed, extra), show=2))
            # a copy: fairseq rewrites checkpoint_last.pt in place when the next length resumes from it
            checkpoint = work / "checkpoints" / f"after_{updates}.pt"
            shutil.copyfile(work / "checkpoints" / "checkpoint_last.pt", checkpoint)
            predict(step, work, checkpoint, "heldout", work / f"defemb_{updates}.pt", f"predict {updates}")
            predict(step, work, checkpoint, "heldout_defonly", work / f"defonly_{updates}.pt", f"predict {updates} defonly")
            step.run(f"reconstruction {updates}", [
                BIN / "defemb-analyze", "reconstruction", "--checkpoint", original / "model.pt",
                "--corpus", work / "definitions", "--predictions", f"{SYSTEM}={work / f'defemb_{updates}.pt'}",
                f"{ABLATION}={work / f'defonly_{updates}.pt'}", "--wordpiece-vocab", model_dir / "vocab.txt",
                "--seed", args.seed, "--out", work / f"reconstruction_{updates}",
            ], show=0)
            reports[updates] = json.loads((work / f"reconstruction_{updates}" / "report.json").read_text())
            checkpoint.unlink()  # 3 x 90 MB of weights and Adam state; the predictions are what is kept
        shutil.rmtree(work / "checkpoints")
        curve = training_curve("".join(logs))
        plot_budget_curve(reports, work / "budget_curve.png")
        write_summary(work, args, budget, extra, reports, curve, step.timings, time.perf_counter() - started)
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
    for name in (SYSTEM, ABLATION):
        ax.plot(updates, [reports[u]["methods"][name]["all"]["mrr"] for u in updates], "o-", label=name)
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


def write_summary(work: Path, args, budget: dict, extra: list[str], reports: dict, curve: dict, timings: dict,
                  seconds: float) -> None:
    from defemb.analysis.reconstruction import reconstruction_markdown

    updates = sorted(reports)
    last = reports[updates[-1]]
    rows = []
    for name in [SYSTEM, ABLATION, *last["baselines"]]:
        cells = [f"{reports[u]['methods'][name]['all']['mrr']:.4f}" for u in updates]
        m = last["methods"][name]["all"]
        rows.append(f"| {name} | {' | '.join(cells)} | {m['hits@1']:.3f} | {m['hits@10']:.3f} | {m['median_rank']:.0f} | "
                    f"{m['cosine']:.3f} |")
    boot = last["bootstrap"]["reciprocal_rank"]
    corpus = json.loads((work / "definitions" / "coverage.json").read_text())
    lines = [
        "# Held-out reconstruction on all-MiniLM-L6-v2 with GCIDE (CPU)", "",
        f"Budget `{args.budget}`, seed {args.seed}, {seconds:.0f} s in all"
        + (f", extra training options `{' '.join(extra)}`" if extra else "") + ". Every number comes from this run "
        "(`examples/eval.py`).", "",
        f"{last['num_tokens']} held-out tokens ({corpus['holdout']['groups']['frequent']} frequent, "
        f"{corpus['holdout']['groups']['medium']} medium; {corpus['holdout']['prompts']['heldout']:,} prompts kept out "
        f"of training); {corpus['splits']['train']:,} training prompts. Rank of the true row among all "
        f"{last['candidate_rows']:,} rows by cosine.", "",
        f"| initialiser | MRR at {' / '.join(map(str, updates))} updates | | | hits@1 | hits@10 | median rank | cosine |"
        if len(updates) == 3 else "", "|---|" + "---:|" * (len(updates) + 4), *rows, "",
        "(hits, median rank and cosine at the largest budget; the initialisers do not train, so their MRR is the "
        "same at every budget.)", "",
        f"Paired bootstrap at {updates[-1]} updates, reciprocal rank: {SYSTEM} {boot['system_mean']:.4f} vs "
        f"{last['best_baseline']} {boot['baseline_mean']:.4f}, delta {boot['delta']:+.4f}, 95% CI "
        f"[{boot['ci95'][0]:+.4f}, {boot['ci95'][1]:+.4f}], p = {boot['p_value']:.3f}.", "",
        f"Training: loss {curve['loss'][0]:.3f} -> {curve['loss'][-1]:.3f}, cosine to the pretrained rows "
        f"{curve['cosine'][0]:.3f} -> {curve['cosine'][-1]:.3f} (train batches)"
        + (f"; valid loss {', '.join(f'{v:.3f}' for v in curve['valid_loss'])}" if curve["valid_loss"] else ""), "",
        "![budget curve](budget_curve.png)", "",
        f"## All groups at {updates[-1]} updates", "", reconstruction_markdown(last),
        "## Time per step (s)", "", "| step | s |", "|---|---:|", *(f"| {k} | {v} |" for k, v in timings.items()), "",
    ]
    (work / "summary.md").write_text("\n".join(lines))
    (work / "results.json").write_text(json.dumps({
        "budget": budget, "seed": args.seed, "train_args": extra, "seconds": seconds, "timings": timings,
        "curve": curve, "holdout": corpus["holdout"], "splits": corpus["splits"],
        "reports": {str(u): {k: v for k, v in r.items() if k != "per_token"} for u, r in reports.items()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
