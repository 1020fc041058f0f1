#!/usr/bin/env python
"""``make demo-bart``: DefinitionEMB on an encoder-decoder, from a random start to ROUGE, on 2 CPU cores.

1. **text**: the full paper texts of ACLSum's training papers and a seeded sample of GCIDE
   definitions (both install with the project) are the pretraining text; ACLSum's
   (abstract + introduction + conclusion -> challenge + approach + outcome) pairs are the
   summarization task. All of it is GPT-2 BPE encoded (BART's tokenizer); ``dict.txt`` lists the
   pretraining text's tokens by count, as ``bart.large/dict.txt`` does, followed by the task's
   tokens that pretraining never saw (count 0, the rarest); ``fairseq-preprocess`` binarizes both.
2. **pretrain**: a small BART from scratch with stock ``fairseq-train --task denoising`` (BART's
   noise: 30% span-Poisson whole-word masking, sentence permutation), a checkpoint every few
   updates; isotropy per frequency group at each of them (the paper's Figure 1: embeddings
   degenerate from a random start).
3. **DefinitionEMB**: ``defemb-corpus`` (every embedded source for this dict.txt), ``fairseq-train --task
   definition_cloze --arch defemb_bart`` (embeddings frozen, as the paper does for BART),
   ``defemb-predict`` for the tokens surgery will replace.
4. **surgery**: ``defemb-surgery`` writes the DefinitionEMB, DelDirection (the paper's Eq. 3),
   DelDirection-centred and Del-zscore checkpoints.
5. **fine-tune and generate**: for the original, DelDirection and DefinitionEMB checkpoints and
   every seed, stock ``fairseq-train --task translation`` on ACLSum and stock ``fairseq-generate``
   on its test split.
6. **measure**: ROUGE-1.5.5 per run (``defemb-analyze rouge``, through sacrerouge), paired bootstrap
   over the pooled seeds' per-summary ROUGE-1.5.5 scores against the original (``defemb-analyze
   significance``), geometry (``defemb-analyze``).

Every step is a console command a user would run; the demo only chooses the CPU budget and
prints it. Everything lands atomically in ``--out`` (a re-run replaces it whole).
"""
import importlib.resources
import json
import random
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fairseq_defemb.analysis.report import model_groups, model_groups_convention
from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix
from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model
from fairseq_defemb.analysis.geometry import GROUP_COLOURS, plot_projections
from fairseq_defemb.analysis.isotropy import CONVENTIONS, isotropy_by_group
from fairseq_defemb.analysis.neighbours import token_surfaces
from fairseq_defemb.surgery.selection import select_rows, task_token_ids
from fairseq_defemb.data.vocabulary import load_model_dictionary
from fairseq_defemb.recipes import RECOMMENDED, Budget
from preprocess.corpus.gcide import read_gcide

from demo_support import (BIN, CPU, REPO, Step, definition_cloze_cmd, first_json, parse_demo_args, plot_mimic_curve,
                          run_surgeries, source_flags, sources_said, training_curve)

GPT2 = REPO / ".cache" / "gpt2"
ASPECTS = ("challenge", "approach", "outcome")
SECTIONS = ("abstract", "introduction", "conclusion")
METHODS = ("original", "DelDirection", "DefinitionEMB")
GROUPS = ("frequent", "medium", "rare", "all")

# A BART of 3 + 3 layers, 256 wide: on 2 cores it pretrains at ~1,300 tokens/s (the 36k-row
# tied output projection is most of the cost), which is what makes a 60-minute budget possible.
MAX_POSITIONS = 256
MAX_TOKENS = 2048  # per batch, in pretraining and fine-tuning alike
BEAM = 4
ARCH = "bart_base"
MODEL = ["--arch", ARCH, "--encoder-layers", "3", "--decoder-layers", "3", "--encoder-embed-dim", "256",
         "--decoder-embed-dim", "256", "--encoder-ffn-embed-dim", "1024", "--decoder-ffn-embed-dim", "1024",
         "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
         "--max-source-positions", str(MAX_POSITIONS), "--max-target-positions", str(MAX_POSITIONS)]
BPE = ["--bpe", "gpt2", "--gpt2-encoder-json", str(GPT2 / "encoder.json"), "--gpt2-vocab-bpe", str(GPT2 / "vocab.bpe")]

BUDGETS = {
    "full": {"gcide_lines": 30000, "valid_papers": 3, "pretrain_updates": 800, "snapshots": 16, "definition_prompts": 16000,
             "definition_updates": 400, "finetune_epochs": 8, "seeds": (1, 2, 3), "test_docs": 100, "alpha": 10,
             "sources": None},
    # the test's; GCIDE and the numbers alone: fewer prompts built to keep 600 than from every source;
    # a quarter of an epoch of fine-tuning: the pipeline runs, its ROUGE means nothing at this size
    "ci": {"gcide_lines": 2000, "valid_papers": 1, "pretrain_updates": 12, "snapshots": 3, "definition_prompts": 600,
           "definition_updates": 6, "finetune_epochs": 0.25, "seeds": (1, 2), "test_docs": 8, "alpha": 10,
           "sources": "gcide,numbers"},
}


# -- text --------------------------------------------------------------------------------

def aclsum_dir() -> Path:
    return Path(str(importlib.resources.files("aclsum") / "dataset"))


def aclsum_split(split: str) -> list[dict]:
    path = aclsum_dir() / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")


def paper_sentences(paper_id: str) -> list[str]:
    """The full text of an ACLSum paper (its S2ORC parse), one sentence per line: the
    denoising task permutes sentences, which it finds as lines."""
    parse = json.loads((aclsum_dir() / "paper_jsons" / f"{paper_id}.json").read_text(encoding="utf-8"))["pdf_parse"]
    paragraphs = [p["text"] for section in ("abstract", "body_text") for p in parse.get(section) or []]
    return [s for p in paragraphs for s in SENTENCE_END.split(" ".join(p.split())) if s]


def pretraining_documents(gcide_lines: int, valid_papers: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """(train, valid) documents of sentences: the training papers and a GCIDE sample (20
    definitions per document); validation is the first papers of ACLSum's validation split."""
    train = [paper_sentences(doc["id"]) for doc in aclsum_split("train")]
    entries = list(read_gcide())
    chosen = random.Random(seed).sample(range(len(entries)), min(gcide_lines, len(entries)))
    lines = [f"{entries[i].word.capitalize()}: {entries[i].definition}" for i in sorted(chosen)]
    train += [lines[i:i + 20] for i in range(0, len(lines), 20)]
    valid = [paper_sentences(doc["id"]) for doc in aclsum_split("val")[:valid_papers]]
    return train, valid


def summarization_pairs(test_docs: int) -> dict[str, list[tuple[str, str]]]:
    """ACLSum as one summary per paper: the three aspect summaries in order, from the
    abstract, introduction and conclusion sentences."""
    pairs = {}
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        docs = aclsum_split(split)[: test_docs if split == "test" else None]
        pairs[name] = [(" ".join(s for sec in SECTIONS for s in doc["sentences"][sec]),
                        " ".join(doc["summary"][a] for a in ASPECTS)) for doc in docs]
    return pairs


class GPT2Text:
    """GPT-2 BPE ids of text, as fairseq's examples/roberta/multiprocessing_bpe_encoder writes them."""

    def __init__(self):
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        self.bpe = get_encoder(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))

    def ids(self, line: str) -> list[int]:
        return self.bpe.encode(line.strip())


def write_ids(path: Path, rows: list[list[int]]) -> None:
    path.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))


def write_document_ids(path: Path, documents: list[list[list[int]]]) -> None:
    """fairseq's document format: one sentence per line, an empty line between documents."""
    path.write_text("\n".join("".join(" ".join(map(str, s)) + "\n" for s in doc if s) for doc in documents))


def prepare_text(raw: Path, budget: dict, seed: int) -> dict:
    """BPE-encoded pretraining documents and summarization pairs, and dict.txt; returns counts."""
    raw.mkdir(parents=True)
    bpe = GPT2Text()
    train, valid = pretraining_documents(budget["gcide_lines"], budget["valid_papers"], seed)
    train_ids = [[bpe.ids(s) for s in doc] for doc in train]
    write_document_ids(raw / "pretrain.train.bpe", train_ids)
    write_document_ids(raw / "pretrain.valid.bpe", [[bpe.ids(s) for s in doc] for doc in valid])
    counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for doc in train_ids for s in doc]),
                         minlength=len(bpe.bpe.encoder))
    task_tokens = set()
    pairs = summarization_pairs(budget["test_docs"])
    for split, rows in pairs.items():
        for side, column in (("source", 0), ("target", 1)):
            ids = [bpe.ids(row[column]) for row in rows]
            task_tokens.update(t for r in ids for t in r)
            write_ids(raw / f"{split}.bpe.{side}", ids)
            (raw / f"{split}.{side}").write_text("".join(row[column] + "\n" for row in rows))
    seen = np.flatnonzero(counts)
    unseen = sorted(task_tokens - set(seen.tolist()))
    # bart.large's order: most frequent in pretraining first. Ties by BPE id, for a stable file.
    order = sorted(seen.tolist(), key=lambda t: (-counts[t], t)) + unseen
    (raw / "dict.txt").write_text("".join(f"{t} {counts[t]}\n" for t in order))
    return {"pretraining_tokens": int(counts.sum()), "pretraining_documents": len(train),
            "pretraining_types": len(seen), "task_types_unseen_in_pretraining": len(unseen),
            "dictionary_size": len(order), "pairs": {k: len(v) for k, v in pairs.items()}}


# -- pretraining and Figure 1 ----------------------------------------------------------------

def pretrain_options(budget: dict, seed: int) -> list:
    """BART's denoising recipe (fairseq examples/bart) scaled down; lr 1e-3 as the paper's
    Figure 1 run (Appendix A.4). Spans are of subwords, not whole words: fairseq's denoising
    task builds its whole-word mask from its own ``bpe`` option with GPT-2's default files,
    which it downloads, so ``--bpe gpt2`` cannot run offline."""
    updates = budget["pretrain_updates"]
    every = max(1, updates // budget["snapshots"])
    return [*MODEL, "--tokens-per-sample", MAX_POSITIONS, "--mask", "0.3",
            "--mask-length", "span-poisson", "--poisson-lambda", "3.5", "--replace-length", "1",
            "--permute-sentences", "1", "--rotate", "0.0", "--mask-random", "0.1",
            "--criterion", "cross_entropy", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-6",
            "--clip-norm", "0.1", "--weight-decay", "0.01", "--dropout", "0.1", "--attention-dropout", "0.1",
            "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", max(1, updates // 10),
            "--warmup-init-lr", "1e-7", "--max-tokens", MAX_TOKENS, "--max-update", updates,
            "--save-interval-updates", every, "--keep-interval-updates", "-1", "--validate-interval-updates", every,
            "--no-epoch-checkpoints", "--no-save-optimizer-state", "--log-interval", max(1, every // 2), "--seed", seed, *CPU]


def initial_embeddings(data: Path, options: list) -> torch.Tensor:
    """The embedding matrix fairseq-train starts from: the same options and seed through
    fairseq's own builders (fairseq_cli.train seeds numpy and torch, then builds the model)."""
    from fairseq import utils

    seed = int(options[options.index("--seed") + 1])
    np.random.seed(seed)
    utils.set_torch_seed(seed)
    # build_pretraining_model names the task and architecture itself; MODEL's --arch repeats it
    _, model, _ = build_pretraining_model(data, "denoising", ARCH, [str(o) for o in options])
    return model.encoder.embed_tokens.weight.detach().clone()


def snapshot_update(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def isotropy_during_pretraining(start: torch.Tensor, save_dir: Path, groups: dict, described: str) -> dict:
    """I(E) per group, in both conventions, at update 0 (``start``) and at every interval checkpoint:
    {"conventions": signatures, "trace": [{"update", "paper", "sign_invariant"}]}. The snapshot files
    are deleted once read (the final model is kept as original/model.pt)."""
    reports = [(0, isotropy_by_group(start, groups, described))]
    for path in sorted(save_dir.glob("checkpoint_*_*.pt"), key=snapshot_update):
        reports.append((snapshot_update(path), isotropy_by_group(read_embedding_matrix(path), groups, described)))
    shutil.rmtree(save_dir)
    return {"conventions": reports[0][1]["conventions"],
            "trace": [{"update": update, **{c: report[c] for c in CONVENTIONS}} for update, report in reports]}


def plot_figure1(trace: list[dict], start: torch.Tensor, end: torch.Tensor, groups: dict, path: Path) -> None:
    """Isotropy per frequency group over pretraining, and the 2D projections at both ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    projections = path.with_name(".projections.png")
    plot_projections({f"update 0 (I = {trace[0]['paper']['all']:.3f})": start, f"update {trace[-1]['update']} "
                      f"(I = {trace[-1]['paper']['all']:.3f})": end}, groups, projections, own_basis=True)
    fig, (curve, image) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 2]})
    updates = [t["update"] for t in trace]
    for group in GROUPS:
        colour = GROUP_COLOURS.get(group, "black")
        curve.plot(updates, [t["paper"][group] for t in trace], "o-", ms=3, label=group, color=colour)
        curve.plot(updates, [t["sign_invariant"][group] for t in trace], "--", lw=1, color=colour)
    curve.set_yscale("log")
    curve.set_xlabel("pretraining update")
    curve.set_ylabel("isotropy I(E): paper (solid), sign-invariant (dashed)")
    curve.legend(fontsize=8)
    curve.set_title("embeddings degenerate from a random start")
    image.imshow(Image.open(projections))
    image.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    projections.unlink()


# -- DefinitionEMB ------------------------------------------------------------------------

def read_ids(path: Path) -> set[int]:
    return {int(line) for line in path.read_text().split()}


def showcase_tokens(candidates: list[int], surfaces: list[str], count: int = 3) -> list[str]:
    """A few rare whole-word candidates and a number, for the neighbour lists."""
    words = [surfaces[i] for i in reversed(candidates) if surfaces[i].isalpha() and len(surfaces[i]) >= 7]
    numbers = [surfaces[i] for i in reversed(candidates) if surfaces[i].isdigit()]
    return list(dict.fromkeys(words))[:count] + numbers[:1]


# -- fine-tuning, generation, ROUGE ------------------------------------------------------------

def finetune_options(task_bin: Path, restore: Path, save_dir: Path, seed: int, updates: int) -> list:
    """fairseq's BART summarization recipe (examples/bart/README.summarization.md) at this
    model's size: only the learning rate is raised, for a model this small and this short a run."""
    return [BIN / "fairseq-train", task_bin, "--user-dir", REPO / "fairseq_defemb", "--restore-file", restore,
            "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler",
            "--task", "translation", "--source-lang", "source", "--target-lang", "target", "--truncate-source", *MODEL,
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--dropout", "0.1",
            "--attention-dropout", "0.1", "--weight-decay", "0.01", "--optimizer", "adam", "--adam-betas", "(0.9, 0.999)",
            "--adam-eps", "1e-08", "--clip-norm", "0.1", "--lr-scheduler", "polynomial_decay", "--lr", "3e-4",
            "--total-num-update", updates, "--warmup-updates", max(1, updates // 10), "--max-update", updates,
            "--max-tokens", MAX_TOKENS, "--skip-invalid-size-inputs-valid-test", "--validate-interval", "2",
            "--save-dir", save_dir, "--no-epoch-checkpoints", "--no-last-checkpoints", "--no-save-optimizer-state",
            "--seed", seed, "--log-interval", "5", *CPU]


def generate_options(task_bin: Path, checkpoint: Path) -> list:
    """fairseq's CNN/DM generation settings, lengths fitted to ACLSum's summaries (47-108 tokens)."""
    return [BIN / "fairseq-generate", task_bin, "--user-dir", REPO / "fairseq_defemb", "--path", checkpoint,
            "--task", "translation", "--source-lang", "source", "--target-lang", "target", "--truncate-source",
            "--max-source-positions", MAX_POSITIONS, "--max-target-positions", MAX_POSITIONS, "--gen-subset", "test",
            "--beam", BEAM, "--lenpen", "2.0", "--min-len", "40", "--max-len-b", "120", "--no-repeat-ngram-size", "3",
            "--batch-size", "32", *BPE, *CPU]


def hypotheses(generate_log: str, count: int) -> list[str]:
    """fairseq-generate's D- lines (the hypotheses with the GPT-2 BPE decoded; H- holds the ids),
    back in test-set order."""
    found = {int(i): text for i, text in re.findall(r"^D-(\d+)\t[^\t]*\t(.*)$", generate_log, re.M)}
    if sorted(found) != list(range(count)):
        sys.exit(f"demo: fairseq-generate returned {len(found)} hypotheses for {count} test documents")
    return [found[i] for i in range(count)]


def rouge_scores(step: Step, name: str, hyp: Path, ref: Path) -> dict:
    log = step.run(name, [BIN / "defemb-analyze", "rouge", "--hyp", hyp, "--ref", ref], show=0)
    scores = first_json(log)["ROUGE-1.5.5"]
    if not isinstance(scores, dict):
        sys.exit(f"demo: ROUGE-1.5.5 is not available here ({scores}); `make install` sets it up")
    return scores


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# -- the demo -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args, budget = parse_demo_args(__doc__, "demo-bart-out", BUDGETS, argv)
    started = time.perf_counter()
    print(f"DefinitionEMB encoder-decoder demo ({args.budget} budget) -> {args.out}")
    print(f"  choices: a 3+3-layer, 256-wide BART pretrained from scratch for {budget['pretrain_updates']} updates of "
          f"<= {MAX_TOKENS:,} tokens on ACLSum's training papers + {budget['gcide_lines']:,} GCIDE definitions; "
          f"DefinitionEMB on {budget['definition_prompts']:,} prompts of {sources_said(budget)} (sampled toward rare tokens, "
          f"<= 40 tokens) for {budget['definition_updates']} updates; surgery at alpha {budget['alpha']}; each of "
          f"{', '.join(METHODS)} fine-tuned for {budget['finetune_epochs']} epochs with seeds "
          f"{', '.join(map(str, budget['seeds']))}; {budget['test_docs']} test papers.")
    with atomic_output_dir(args.out, overwrite=True) as work:
        step = Step(work, timeout=args.step_timeout or None)
        text = step.time("text", prepare_text, work / "text", budget, args.seed)
        print(f"\n[text] {json.dumps(text)}")
        raw = work / "text"
        step.run("preprocess pretraining", [
            BIN / "fairseq-preprocess", "--only-source", "--srcdict", raw / "dict.txt", "--trainpref",
            raw / "pretrain.train.bpe", "--validpref", raw / "pretrain.valid.bpe", "--destdir", work / "pretrain-bin",
            "--workers", "2"], show=0)
        step.run("preprocess task", [
            BIN / "fairseq-preprocess", "--source-lang", "source", "--target-lang", "target", "--srcdict", raw / "dict.txt",
            "--tgtdict", raw / "dict.txt", "--trainpref", raw / "train.bpe",
            "--validpref", raw / "valid.bpe", "--testpref", raw / "test.bpe", "--destdir", work / "task-bin",
            "--workers", "2"], show=0)

        # 1. pretraining, and isotropy as it goes
        options = pretrain_options(budget, args.seed)
        pretrain_log = step.run("pretrain", [BIN / "fairseq-train", work / "pretrain-bin", "--user-dir",
                                             REPO / "fairseq_defemb", "--task", "denoising", *options,
                                             "--save-dir", work / "pretrain"])
        original = work / "original"
        original.mkdir()
        (work / "pretrain" / "checkpoint_last.pt").replace(original / "model.pt")
        (original / "dict.txt").write_bytes((raw / "dict.txt").read_bytes())
        dictionary = load_model_dictionary(original / "dict.txt")
        groups = model_groups(dictionary)
        start = initial_embeddings(work / "pretrain-bin", options)
        isotropy_trace = step.time("isotropy trace", isotropy_during_pretraining, start, work / "pretrain", groups,
                                   model_groups_convention(dictionary))
        trace = isotropy_trace["trace"]
        plot_figure1(trace, start, read_embedding_matrix(original / "model.pt"), groups, work / "figure1_pretraining.png")
        print("    isotropy (all; paper / sign-invariant) by update: " + ", ".join(
            f"{t['update']}: {t['paper']['all']:.3f} / {t['sign_invariant']['all']:.3f}" for t in trace))
        pretrain_curve = training_curve(pretrain_log)

        # 2. DefinitionEMB
        step.run("corpus", [
            BIN / "defemb-corpus", "--vocab", original / "dict.txt", *BPE,
            "--max-prompt-tokens", "40", "--limit", budget["definition_prompts"],
            "--valid-size", max(20, budget["definition_prompts"] // 50), "--workers", "2", "--seed", args.seed,
            "--out", work / "definitions", "--no-progress", *RECOMMENDED.corpus_flags(), *source_flags(budget)])
        # the recommended recipe (fairseq_defemb.recipes): the least-squares W, then training from it
        step.run("fit", [BIN / "defemb-fit", "--pretrained-checkpoint", original / "model.pt", "--corpus",
                         work / "definitions", "--out", work / "fit.pt", "--samples", budget["definition_prompts"],
                         "--seed", args.seed, "--no-progress", *RECOMMENDED.fit_flags()], show=5)
        updates = budget["definition_updates"]
        definition_log = step.run("definition_cloze", definition_cloze_cmd(
            work / "definitions", original / "model.pt", work / "definition-checkpoints", arch="defemb_bart",
            recipe=RECOMMENDED, budget=Budget(updates=updates, lr=5e-4, warmup=max(1, updates // 10), max_tokens=4096),
            seed=args.seed, extra=["--projection-init-from", work / "fit.pt", "--validate-interval-updates",
                                   max(1, updates // 5), "--no-last-checkpoints", "--log-interval", max(1, updates // 60)]))
        curve = training_curve(definition_log)
        plot_mimic_curve(curve, work / "definition_training_curve.png", "definition_cloze on the demo's BART")
        task_ids = task_token_ids(work / "task-bin", dictionary, original / "dict.txt").ids
        candidates = select_rows(dictionary, task_ids, read_ids(work / "definitions" / "grounded_ids.txt"),
                                 budget["alpha"]).replaced
        (work / "candidates.txt").write_text("".join(f"{i}\n" for i in candidates))
        step.run("predict", [
            BIN / "defemb-predict", "--checkpoint", work / "definition-checkpoints" / "checkpoint_best.pt",
            "--corpus", work / "definitions", "--out", work / "defemb.pt", "--token-ids", work / "candidates.txt",
            "--device", "cpu", "--no-progress"])

        # 3. surgery
        # the ci budget's few updates leave rows the sanity guard refuses: written anyway there, figures kept
        forced = {"DefinitionEMB"} if args.budget == "ci" else set()
        checkpoints = {"original": original / "model.pt",
                       **run_surgeries(step, work, original, budget["alpha"], show=2, forced=forced)}

        # 4. fine-tune, generate and score every method with every seed
        test_refs = raw / "test.target"
        finetune_updates = max(1, round(finetune_steps_per_epoch(work / "task-bin") * budget["finetune_epochs"]))
        (work / "hypotheses").mkdir()

        def finetune_generate_score(method: str, seed: int) -> tuple[str, dict]:
            run, save = f"{method}-seed{seed}", work / "finetune" / f"{method}-seed{seed}"
            # Two runs side by side on one thread each: 1.27x the throughput of one run on two
            # threads here (small matrices scale poorly across threads).
            log = step.run(f"finetune {run}", finetune_options(work / "task-bin", checkpoints[method], save, seed,
                                                               finetune_updates), show=1, threads=1)
            generated = step.run(f"generate {run}", generate_options(work / "task-bin", save / "checkpoint_best.pt"),
                                 show=1, threads=1)
            hyp = work / "hypotheses" / f"{run}.txt"
            generated_summaries = hypotheses(generated, budget["test_docs"])
            hyp.write_text("".join(h + "\n" for h in generated_summaries))
            rouge = rouge_scores(step, f"rouge {run}", hyp, test_refs)
            print(f"    {run}: ROUGE-1/2/L {rouge['rouge1']:.2f} / {rouge['rouge2']:.2f} / {rouge['rougeL']:.2f}", flush=True)
            # ROUGE F1 rewards length up to the references', so the length goes next to it.
            words = float(np.mean([len(h.split()) for h in generated_summaries]))
            return run, {"method": method, "seed": seed, "rouge": rouge, "words_per_summary": words,
                         "finetune_valid_loss": training_curve(log)["valid_loss"]}

        pool = ThreadPoolExecutor(max_workers=2)
        try:
            jobs = [pool.submit(finetune_generate_score, m, s) for m in METHODS for s in budget["seeds"]]
            runs = dict(job.result() for job in jobs)
        finally:
            pool.shutdown(cancel_futures=True)  # a failed run stops the ones not yet started
        significance = {}
        for method in METHODS[1:]:
            files = {m: ",".join(str(work / "hypotheses" / f"{m}-seed{s}.txt") for s in budget["seeds"])
                     for m in ("original", method)}
            log = step.run(f"significance {method}", [BIN / "defemb-analyze", "significance", "--ref", test_refs,
                                                      "--baseline", files["original"], "--system", files[method]], show=0)
            significance[method] = first_json(log)

        # 5. geometry of the five matrices
        surfaces = token_surfaces(dictionary, GPT2 / "encoder.json")
        step.run("analyze", [
            BIN / "defemb-analyze", "--checkpoint", original / "model.pt", "--embeddings",
            *(f"{n}={checkpoints[n]}" for n in ("DelDirection", "DelDirection-centred", "Del-zscore", "DefinitionEMB")),
            "--dict", original / "dict.txt", "--gpt2-encoder-json", GPT2 / "encoder.json",
            "--neighbours-of", *showcase_tokens(candidates, surfaces), "--out", work / "analysis", "--no-progress"], show=0)
        (work / "analysis" / "projection.png").replace(work / "projection.png")
        plot_rouge(runs, work / "rouge.png")
        write_summary(work, args, budget, text, step.timings, isotropy_trace, pretrain_curve, curve, candidates, runs,
                      significance, finetune_updates, time.perf_counter() - started)
    print(f"\ndone in {time.perf_counter() - started:.0f} s: {args.out}/summary.md")
    return 0


def finetune_steps_per_epoch(task_bin: Path) -> int:
    """Batches per epoch of the training pairs at --max-tokens MAX_TOKENS with sources truncated to
    the model's positions (what fairseq-train's batching gives for these lengths)."""
    from fairseq.data import data_utils

    sizes = {}
    for side in ("source", "target"):
        dataset = data_utils.load_indexed_dataset(str(task_bin / f"train.source-target.{side}"), None)
        sizes[side] = np.minimum(dataset.sizes, MAX_POSITIONS)
    lengths = np.maximum(sizes["source"], sizes["target"])
    order = np.argsort(lengths, kind="stable")
    batches = data_utils.batch_by_size(order, lambda i: int(lengths[i]), max_tokens=MAX_TOKENS, required_batch_size_multiple=1)
    return len(batches)


def plot_rouge(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.25
    for k, method in enumerate(METHODS):
        for j, metric in enumerate(("rouge1", "rouge2", "rougeL")):
            values = [r["rouge"][metric] for r in runs.values() if r["method"] == method]
            mean, std = mean_std(values)
            ax.bar(j + (k - 1) * width, mean, width, yerr=std, capsize=3, label=method if j == 0 else None,
                   color=("tab:gray", "tab:orange", "tab:green")[k])
            ax.scatter([j + (k - 1) * width] * len(values), values, s=8, c="black", zorder=3)
    ax.set_xticks(range(3), ["ROUGE-1", "ROUGE-2", "ROUGE-L"])
    ax.set_ylabel("F1 (ROUGE-1.5.5)")
    ax.set_title("ACLSum test, mean +- std over seeds (dots: seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(work: Path, args, budget: dict, text: dict, timings: dict, isotropy_trace: dict, pretrain_curve: dict,
                  curve: dict, candidates: list[int], runs: dict, significance: dict, finetune_updates: int,
                  seconds: float) -> None:
    corpus = json.loads((work / "definitions" / "coverage.json").read_text())
    surgery = json.loads((work / "DefinitionEMB" / "surgery.json").read_text())
    prediction = torch.load(work / "defemb.pt", map_location="cpu", weights_only=True)
    analysis = json.loads((work / "analysis" / "report.json").read_text())
    (rouge_signature,) = {r["rouge"]["signature"] for r in runs.values()}  # every run scored the same way
    rouge_rows = []
    table = {}
    for method in METHODS:
        row = {}
        for metric in ("rouge1", "rouge2", "rougeL"):
            row[metric] = mean_std([r["rouge"][metric] for r in runs.values() if r["method"] == method])
        table[method] = row
        cells = []
        for metric in ("rouge1", "rouge2", "rougeL"):
            mean, std = row[metric]
            cell = f"{mean:.2f} ± {std:.2f}"
            if method != "original":
                delta = mean - table["original"][metric][0]
                test = significance[method][metric]
                p = f"p < {1 / test['resamples']:g}" if test["p_value"] == 0 else f"p = {test['p_value']:.3f}"
                cell += f" ({delta:+.2f}, {p})"
            cells.append(cell)
        method_runs = [r for r in runs.values() if r["method"] == method]
        words = np.mean([r["words_per_summary"] for r in method_runs])
        valid_loss = np.mean([r["finetune_valid_loss"][-1] for r in method_runs])
        rouge_rows.append(f"| {method} | " + " | ".join(cells) + f" | {words:.1f} | {valid_loss:.3f} |")
    reference_words = np.mean([len(line.split()) for line in (work / "text" / "test.target").read_text().splitlines()
                               if line.strip()])
    first, last = isotropy_trace["trace"][0], isotropy_trace["trace"][-1]
    lines = [
        "# DefinitionEMB on a BART pretrained from scratch (CPU demo)", "",
        f"Budget `{args.budget}`, seed {args.seed}, {seconds / 60:.1f} min in all. Every number below comes from this run.", "",
        "## What ran", "",
        f"- **text**: {text['pretraining_tokens']:,} GPT-2 BPE tokens of pretraining text ({text['pretraining_documents']:,} "
        f"documents: ACLSum's {text['pairs']['train']} training papers, full text, and {budget['gcide_lines']:,} GCIDE "
        f"definitions); dict.txt of {text['dictionary_size']:,} symbols in pretraining-count order, the last "
        f"{text['task_types_unseen_in_pretraining']:,} being ACLSum tokens pretraining never saw; ACLSum pairs "
        f"train/valid/test {text['pairs']['train']}/{text['pairs']['valid']}/{text['pairs']['test']}",
        f"- **pretrain**: stock `fairseq-train --task denoising`, {budget['pretrain_updates']} updates from a random start; "
        f"loss {pretrain_curve['loss'][0]:.2f} -> {pretrain_curve['loss'][-1]:.2f} (base 2), valid loss "
        f"{pretrain_curve['valid_loss'][0]:.2f} -> {pretrain_curve['valid_loss'][-1]:.2f}",
        f"- **DefinitionEMB**: {corpus['prompts_kept']:,} of {corpus['prompts_built']:,} prompts from "
        f"{', '.join(corpus['licences'])} "
        f"(grounded: {100 * corpus['coverage']['grounded']['share']:.1f}% of the vocabulary), {budget['definition_updates']} "
        f"updates, train loss {curve['loss'][0]:.3f} -> {curve['loss'][-1]:.3f}, cosine to the pretrained rows "
        f"{curve['cosine'][0]:.3f} -> {curve['cosine'][-1]:.3f}; predicted {len(prediction['token_ids']):,} of "
        f"{len(candidates):,} candidate tokens",
        f"- **surgery**: DefinitionEMB replaced {surgery['num_changed']:,} rows (alpha {budget['alpha']}: budget "
        f"{surgery['budget']:,} of the task's tokens, {surgery['requested_without_definition']:,} without a definition); "
        "DelDirection (the paper's Eq. 3), DelDirection-centred and Del-zscore transform the whole matrix",
        f"- **fine-tune**: stock `fairseq-train --task translation`, {finetune_updates} updates "
        f"({budget['finetune_epochs']} epochs) per run, seeds {', '.join(map(str, budget['seeds']))}; "
        f"stock `fairseq-generate` (beam {BEAM}) on {text['pairs']['test']} test papers", "",
        "## Figure 1: the embeddings degenerate during pretraining", "",
        f"Isotropy I(E) from update 0 to {last['update']}, the paper's convention (one direction per eigenvector, "
        "with numpy.linalg.eig's sign): " + ", ".join(f"{g} {first['paper'][g]:.3f} -> {last['paper'][g]:.3f}" for g in GROUPS)
        + "; sign-invariant (both signs of each eigenvector): "
        + ", ".join(f"{g} {first['sign_invariant'][g]:.3f} -> {last['sign_invariant'][g]:.3f}" for g in GROUPS) + ".", "",
        *(f"- {c}: `{isotropy_trace['conventions'][c]}`" for c in CONVENTIONS), "",
        "![isotropy during pretraining](figure1_pretraining.png)", "",
        "## ROUGE on ACLSum (ROUGE-1.5.5 F1, mean ± std over seeds; vs original: delta, paired bootstrap p)", "",
        f"ROUGE: `{rouge_signature}`", "",
        "| model | ROUGE-1 | ROUGE-2 | ROUGE-L | words per summary | fine-tune valid loss |",
        "|---|---:|---:|---:|---:|---:|", *rouge_rows, "",
        f"The references average {reference_words:.1f} words; valid loss is fairseq's (base 2) at the last validation.", "",
        f"Paired bootstrap (Koehn 2004): the test examples of all seeds pooled, "
        f"{significance['DefinitionEMB']['rouge1']['resamples']:,} resamples; p is the share of "
        "resamples in which the method does not beat the original; resampled scores: "
        f"`{significance['DefinitionEMB']['rouge1']['signature']}`.", "",
        "![ROUGE per method](rouge.png)", "",
        "## Geometry of the pretrained embeddings and the four replacements", "",
        (work / "analysis" / "summary.md").read_text(), "",
        "![projection](projection.png)", "", "![definition_cloze](definition_training_curve.png)", "",
        "## Time per step (s)", "", "| step | s |", "|---|---:|", *(f"| {k} | {v} |" for k, v in timings.items()), "",
    ]
    (work / "summary.md").write_text("\n".join(lines))
    (work / "summary.json").write_text(json.dumps({
        "budget": budget, "seed": args.seed, "seconds": seconds, "timings": timings, "text": text,
        "isotropy_during_pretraining": isotropy_trace, "pretrain_curve": pretrain_curve, "definition_curve": curve, "candidates": len(candidates),
        "runs": runs, "rouge": {m: {k: {"mean": v[0], "std": v[1]} for k, v in row.items()} for m, row in table.items()},
        "rouge_signature": rouge_signature,
        "significance": significance, "analysis": analysis, "coverage": corpus["coverage"],
    }, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
