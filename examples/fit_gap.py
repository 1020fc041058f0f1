#!/usr/bin/env python
"""Why the uniform headword fit's closed-form W ranked held-out rows at MRR 0.30 and ``make eval``'s at 0.02.

One feature pass of the frozen encoder (``fairseq_defemb.fit.read_states``: the states the model reads,
before W), cached under ``--cache``, then every variant of the measurement is a ridge fit and a
ranking on cached rows, so the ladder from the uniform headword fit to ``make eval``'s costs one pass.

Two corpora of the same text (``defemb-corpus --source gcide,numbers --lowercase
--max-prompt-tokens 32``): ``--corpus`` the full one (the uniform headword fit's), ``--eval-corpus`` the one
``make eval`` builds (``--limit 12000 --valid-size 300 --holdout 200``: a rare-weighted sample of
training prompts, 200 frequent/medium held-out tokens). Held-out sets: **I** (the uniform headword fit's: 400 ids
in ``--id-range`` that are a whole one-subword variant, as ``examples/fit_heldout.py`` draws them)
and **E** (the eval corpus's ``holdout_ids.txt``). Reads (modes):

* ``one``: one headword subword masked at a time, read at its position (what ``defemb-fit`` and
  ``defemb-predict`` read; the paper's prompt, the other variants visible);
* ``hide``: the same with every held-out id of the prompt masked too (``defemb-predict`` on a
  ``heldout`` split);
* ``spans``: every variant span masked, every span position read.

    python examples/fit_gap.py --pretrained-checkpoint minilm/model.pt --corpus defs --eval-corpus evaldefs \\
        --cache gap-cache --out gap
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.data.cloze_dataset import DefinitionClozeDataset
from fairseq_defemb.data.corpus_format import load_split
from fairseq_defemb.analysis.reconstruction import score_tokens
from fairseq_defemb.atomic_io import write_json, write_text
from fairseq_defemb.fit import (LAMBDA_GRID, ReadStates, build_definition_model, mimic_metrics, read_positions, read_states,
                        sample_prompts)

from fit_heldout import single_subword_tokens

MODES = ("one", "hide", "spans")


def cloze_dataset(task, split: str, mode: str, hidden: np.ndarray | None = None) -> DefinitionClozeDataset:
    """``split`` of the task's corpus read as ``mode`` says (module docstring)."""
    return DefinitionClozeDataset(
        load_split(task.cfg.data, split), pad_idx=task.dictionary.pad(), eos_idx=task.dictionary.eos(),
        mask_idx=task.mask_idx, random_token_ids=task.random_token_ids(), corruption="bert",
        # spans: every span position masked (mask_prob 1), all read in one pass per prompt
        mask_prob=1.0, random_token_prob=0.0, seed=task.cfg.seed, predict=mode != "spans", fixed_corruption=True,
        hidden_ids=hidden if mode == "hide" else None)


def defining_prompts(dataset, held: np.ndarray, whole_variant: bool) -> np.ndarray:
    """Prompts with a held-out id in a span; with ``whole_variant`` only where it is a whole one-subword variant."""
    occ = dataset.occurrences
    hit = np.isin(occ[:, 2], held)
    if whole_variant:
        keep = []
        for i in np.unique(occ[hit, 0]):
            prompt = dataset.corpus.prompts[int(i)].numpy()
            if any(e - s == 1 and prompt[s] in held for s, e in dataset.corpus.spans_of(int(i)).tolist()):
                keep.append(i)
        return np.asarray(keep, dtype=np.int64)
    return np.unique(occ[hit, 0])


def read_part(cache: Path, name: str, model, dataset, prompts: np.ndarray | None, max_tokens: int,
              items: np.ndarray | None = None, headword: bool = False) -> dict:
    """The states of ``prompts`` (cached in ``cache/name.pt``: a second run reads the file)."""
    path = cache / f"{name}.pt"
    if path.is_file():
        return torch.load(path)
    start = time.perf_counter()
    if headword:
        read = read_positions(model, dataset, prompts, "headword", max_tokens=max_tokens, progress=True, desc=name)
    else:
        read = read_states(model, dataset, prompts, items=items, max_tokens=max_tokens, progress=True, desc=name)
    part = {"states": read.states, "targets": read.targets, "prompts": read.definitions, "positions": read.positions,
            "seconds": time.perf_counter() - start}
    tmp = path.with_suffix(".tmp")
    torch.save(part, tmp)
    tmp.replace(path)
    print(f"{name}: {len(read.targets):,} states of {read.prompts:,} prompts in {part['seconds']:.0f} s", flush=True)
    return part


def feature_pass(args) -> dict:
    """Every cached part (module docstring), the held-out sets and the prompt lists."""
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    low, high = map(int, args.id_range.split(","))
    model, task, _ = build_definition_model(pretrained_checkpoint=args.pretrained_checkpoint, corpus=args.corpus,
                                            seed=args.seed)
    model.eval()
    one = {s: cloze_dataset(task, s, "one") for s in ("train", "valid")}
    candidates = np.union1d(*(single_subword_tokens(d, low, high) for d in one.values()))
    held_i = np.sort(np.random.default_rng(args.seed).choice(candidates, size=args.heldout, replace=False))
    held_e = np.loadtxt(Path(args.eval_corpus) / "holdout_ids.txt", dtype=np.int64)
    both = set(held_i.tolist()) | set(held_e.tolist())
    parts = {}

    def read(name: str, task_, model_, split: str, mode: str, prompts, hidden=None, items=None, headword=False) -> None:
        if args.cached_only and not (cache / f"{name}.pt").is_file():
            return
        parts[name] = read_part(cache, name, model_, cloze_dataset(task_, split, mode, hidden), prompts, args.max_tokens,
                                items, headword)

    # The uniform headword fit: uniform training prompts of the full corpus defining no held-out token of either
    # set; lambda's choice on a sample of the validation split (defemb-fit reads all of it).
    fit = sample_prompts(one["train"], args.samples, args.seed, both)
    valid = sample_prompts(one["valid"], args.valid_samples, args.seed, both)
    # Set I's defining prompts (a held-out id a whole one-subword variant, as fit_heldout.py reads them).
    defining_i = {split: defining_prompts(one[split], held_i, whole_variant=True) for split in ("train", "valid")}
    model_e, task_e, _ = build_definition_model(pretrained_checkpoint=args.pretrained_checkpoint,
                                                corpus=args.eval_corpus, seed=args.seed)
    model_e.eval()
    # make eval's corpus: defemb-fit's sample (no exclusion: the corpus already holds set E out),
    # the validation split, and the heldout split read with and without the held-out ids hidden.
    fit_e = sample_prompts(cloze_dataset(task_e, "train", "one"), args.eval_samples, args.seed)
    # Cheapest and most needed first: a part is a file, so an interrupted pass resumes.
    read("full.fit.one", task, model, "train", "one", fit)
    for split in ("train", "valid"):
        read(f"full.I.{split}.one", task, model, split, "one", defining_i[split])
    # The uniform headword fit read literally: --samples prompts whose headword is one subword, read once, there.
    head = sample_prompts(one["train"], args.samples, args.seed, both, headword_only=True)
    read("full.head.one", task, model, "train", "one", head, headword=True)
    read("full.valid.one", task, model, "valid", "one", valid)
    read("eval.fit.one", task_e, model_e, "train", "one", fit_e)
    read("eval.valid.one", task_e, model_e, "valid", "one", None)
    # only the held-out tokens' own occurrences are predicted (as defemb-predict --token-ids reads them)
    own_e = np.nonzero(np.isin(cloze_dataset(task_e, "heldout", "one").occurrences[:, 2], held_e))[0]
    for mode in ("one", "hide"):
        read(f"eval.E.heldout.{mode}", task_e, model_e, "heldout", mode, None, held_e, items=own_e)
    for split in ("train", "valid"):
        own_i = np.nonzero(np.isin(one[split].occurrences[:, 2], held_i))[0]
        read(f"full.I.{split}.hide", task, model, split, "hide", defining_i[split], held_i, items=own_i)
    # every variant span masked, on a subset of the fit prompts
    spans_fit = np.sort(np.random.default_rng(args.seed).choice(fit, size=min(args.spans_samples, len(fit)),
                                                                 replace=False))
    read("full.fit.spans", task, model, "train", "spans", spans_fit)
    read("full.valid.spans", task, model, "valid", "spans", valid)
    for split in ("train", "valid"):
        read(f"full.I.{split}.spans", task, model, split, "spans", defining_i[split])
    read("eval.E.heldout.spans", task_e, model_e, "heldout", "spans", None)
    return {"parts": parts, "held_i": held_i, "held_e": held_e, "candidates_i": len(candidates),
            "embeddings": model.target_embeddings.detach().clone(), "nspecial": task.dictionary.nspecial,
            "mask_idx": task.mask_idx}


# -- the ladder: every variant a fit and a ranking on cached rows ------------------------------------

class Rows:
    """A cached part with, per row, where it was read: the span it lies in and that span's length."""

    def __init__(self, part: dict, corpus_split):
        self.states, self.targets = part["states"], part["targets"]
        self.prompts, self.positions = part["prompts"], part["positions"]
        span_index, span_len = [], []
        for prompt, position in zip(self.prompts.tolist(), self.positions.tolist()):
            spans = corpus_split.spans_of(prompt).tolist()
            k = next(i for i, (s, e) in enumerate(spans) if s <= position < e)
            span_index.append(k)
            span_len.append(spans[k][1] - spans[k][0])
        self.span_index, self.span_len = torch.tensor(span_index), torch.tensor(span_len)

    def select(self, keep: torch.Tensor) -> "Rows":
        out = object.__new__(Rows)
        for name in ("states", "targets", "prompts", "positions", "span_index", "span_len"):
            setattr(out, name, getattr(self, name)[keep])
        return out

    def where(self, rows: str) -> torch.Tensor:
        """Which rows a fit or a prediction uses: ``all`` (every headword subword, as defemb-fit and
        defemb-predict read), ``whole`` (a one-subword variant), ``head`` (the first variant, one subword)."""
        return {"all": torch.ones(len(self.targets), dtype=torch.bool), "whole": self.span_len == 1,
                "head": (self.span_len == 1) & (self.span_index == 0)}[rows]

    def of_prompts(self, prompts: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.isin(self.prompts.numpy(), prompts))


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float, centred: bool):
    """(W, b) of y ~ x W^T + b by ridge regression in float64; b = 0 unless ``centred``."""
    x, y = x.double(), y.double()
    xbar = x.mean(0) if centred else torch.zeros(x.size(1), dtype=torch.float64)
    ybar = y.mean(0) if centred else torch.zeros(y.size(1), dtype=torch.float64)
    xc, yc = x - xbar, y - ybar
    w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(x.size(1), dtype=torch.float64), xc.T @ yc).T
    return w, ybar - xbar @ w.T


def fit_w(fit: Rows, valid: Rows, embeddings: torch.Tensor, *, lam, centred: bool) -> tuple:
    """W (and bias) on ``fit``; ``lam`` a number or "valid" (the LAMBDA_GRID value with the lowest
    Eq. 5 loss on ``valid``, as defemb-fit chooses it)."""
    y = embeddings[fit.targets]
    if lam != "valid":
        return (*ridge(fit.states, y, lam, centred), lam)
    read = ReadStates(valid.states, valid.targets, valid.prompts, 0)
    losses = {}
    for candidate in LAMBDA_GRID:
        w, b = ridge(fit.states, y, candidate, centred)
        losses[candidate] = mimic_metrics((valid.states.double() @ w.T + b).float(), read, embeddings)["loss"]
    best = min(losses, key=losses.get)
    return (*ridge(fit.states, y, best, centred), best)


def token_predictions(rows: Rows, w, b, held: np.ndarray, average: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, one prediction each): ``rows`` mean over read rows (examples/fit_heldout.py); ``definitions``
    the mean over prompts of the per-prompt mean (defemb-predict's default); ``prompt`` no averaging,
    one (token, prompt) pair each; ``unit`` the mean of unit-length row predictions."""
    keep = torch.from_numpy(np.isin(rows.targets.numpy(), held))
    pred = rows.states[keep].double() @ w.T + b
    targets, prompts = rows.targets[keep], rows.prompts[keep]
    if average == "unit":
        pred = pred / pred.norm(dim=1, keepdim=True)
    if average in ("rows", "unit"):
        keys = targets
    else:
        keys = targets * (1 << 32) + prompts  # per (token, prompt) first
    uniq, inverse = torch.unique(keys, return_inverse=True)
    sums = torch.zeros(len(uniq), pred.size(1), dtype=torch.float64).index_add_(0, inverse, pred)
    means = sums / torch.bincount(inverse, minlength=len(uniq))[:, None]
    ids = uniq if average in ("rows", "unit") else uniq // (1 << 32)
    if average == "definitions":
        tokens, inverse = torch.unique(ids, return_inverse=True)
        sums = torch.zeros(len(tokens), pred.size(1), dtype=torch.float64).index_add_(0, inverse, means)
        return tokens, sums / torch.bincount(inverse, minlength=len(tokens))[:, None]
    return ids, means


def rank(pred: torch.Tensor, ids: torch.Tensor, embeddings: torch.Tensor, candidates: np.ndarray,
         metric: str = "cosine") -> dict:
    """MRR, hits@10, median rank and mean cosine of the true row among ``candidates`` rows
    (fairseq_defemb.analysis.reconstruction.score_tokens; ``metric`` l2: by squared distance instead)."""
    matrix = embeddings.double().numpy()[candidates]
    slot = np.full(len(embeddings), -1)
    slot[candidates] = np.arange(len(candidates))
    local = slot[ids.numpy()]
    assert (local >= 0).all(), "a held-out id outside the candidate rows"
    p = pred.numpy()
    scores = score_tokens(p, local, matrix)
    ranks = scores.rank
    if metric == "l2":
        d = (p ** 2).sum(1)[:, None] - 2 * p @ matrix.T + (matrix ** 2).sum(1)[None]
        ranks = (d <= d[np.arange(len(local)), local][:, None]).sum(1)
    return {"MRR": float((1.0 / ranks).mean()), "hits@10": float((ranks <= 10).mean()),
            "median_rank": float(np.median(ranks)), "cos": float(scores.cosine.mean()), "tokens": len(ids)}


def ladder(args, features: dict) -> list[dict]:
    """The uniform headword fit, then one difference at a time toward make eval's; each step also alone."""
    parts, emb = features["parts"], features["embeddings"]
    full, evald = Path(args.corpus), Path(args.eval_corpus)
    splits = {}

    def rows(name: str) -> Rows:
        corpus, key = (full if name.startswith("full") else evald), name.split(".")[1]
        split = {"fit": "train", "head": "train", "I": name.split(".")[2], "E": "heldout"}.get(key, key)
        if (corpus, split) not in splits:
            splits[(corpus, split)] = load_split(corpus, split)
        return Rows(parts[name], splits[(corpus, split)])

    def cat(*many: Rows) -> Rows:
        out = object.__new__(Rows)
        for name in ("states", "targets", "prompts", "positions", "span_index", "span_len"):
            setattr(out, name, torch.cat([getattr(r, name) for r in many]))
        return out

    def defining(corpus: Path, split: str, ids: np.ndarray) -> np.ndarray:
        """Prompts of ``split`` with an id of ``ids`` in a headword span."""
        data = splits.setdefault((corpus, split), load_split(corpus, split))
        return np.asarray([i for i in range(len(data)) if np.isin(
            np.concatenate([data.prompts[i].numpy()[s:e] for s, e in data.spans_of(i).tolist()]), ids).any()])

    r = {name: rows(name) for name in parts}
    # train and valid prompt numbers never meet: set I's valid rows get an offset
    for name in parts:
        if ".valid." in name and name.startswith("full.I"):
            r[name].prompts = r[name].prompts + (1 << 24)
    held = {"I": features["held_i"], "E": features["held_e"]}
    nspecial = features["nspecial"]
    candidates = {"non-special rows": np.arange(nspecial, len(emb)), "all rows": np.arange(len(emb))}
    def have(*names: str) -> bool:
        return all(n in r for n in names)

    fit_all = {k: r[v] for k, v in (("full_head", "full.head.one"), ("full", "full.fit.one"),
                                    ("full_spans", "full.fit.spans"), ("eval", "eval.fit.one")) if have(v)}
    valid_all = {k: r[v] for k, v in (("full_head", "full.valid.one"), ("full", "full.valid.one"),
                                      ("full_spans", "full.valid.spans"), ("eval", "eval.valid.one")) if have(v)}
    predict_parts = {("I", mode): cat(r[f"full.I.train.{mode}"], r[f"full.I.valid.{mode}"])
                     for mode in MODES if have(f"full.I.train.{mode}", f"full.I.valid.{mode}")}
    predict_parts.update({("E", mode): r[f"eval.E.heldout.{mode}"] for mode in MODES if have(f"eval.E.heldout.{mode}")})
    def subset(key: str, n: int) -> np.ndarray:
        """``n`` of the fit prompts of ``key``, seeded: fewer fit prompts, same distribution."""
        prompts = np.unique(fit_all[key].prompts.numpy())
        return np.sort(np.random.default_rng(args.seed).choice(prompts, size=min(n, len(prompts)), replace=False))

    def measure(s: dict) -> dict | None:
        """The metrics of settings ``s``; None when a part they need is not cached (--cached-only)."""
        key = "full_spans" if s["fit_read"] == "spans" else s["fit_corpus"]
        if key not in fit_all or key not in valid_all or (s["held"], s["predict_read"]) not in predict_parts:
            return None
        key = "full_spans" if s["fit_read"] == "spans" else s["fit_corpus"]
        fit, valid = fit_all[key], valid_all[key]
        if s["fit_prompts"] is not None and key != "eval":  # make eval's fit is 2,000 prompts already
            fit = fit.select(fit.of_prompts(subset(key, s["fit_prompts"])))
        if s["fit_corpus"] == "eval" and s["held"] == "I":  # the eval corpus holds out set E only
            fit, valid = (part.select(~part.of_prompts(defining(evald, split, held["I"])))
                          for part, split in ((fit, "train"), (valid, "valid")))
        fit, valid = fit.select(fit.where(s["fit_rows"])), valid.select(valid.where(s["fit_rows"]))
        w, b, lam = fit_w(fit, valid, emb, lam=s["lambda"], centred=s["centred"])
        pr = predict_parts[(s["held"], s["predict_read"])]
        pr = pr.select(pr.where(s["predict_rows"]))
        ids, pred = token_predictions(pr, w, b, held[s["held"]], s["average"])
        out = rank(pred.float().double(), ids, emb, candidates[s["candidates"]], s["metric"])
        out.update(lam_used=lam, fit_states=len(fit.targets), fit_prompts=len(np.unique(fit.prompts.numpy())))
        return out

    issue = {"held": "I", "fit_corpus": "full_head", "fit_prompts": None, "fit_read": "one", "fit_rows": "head",
             "lambda": 1.0, "centred": True, "predict_read": "one", "predict_rows": "whole", "average": "rows",
             "candidates": "non-special rows", "metric": "cosine"}
    steps = [  # (what changes, the change) in the order the ladder walks toward make eval
        ("fit on every headword subword of uniform prompts (defemb-fit's read), not the headword of one-subword "
         "headwords", {"fit_corpus": "full", "fit_rows": "all"}),
        ("bias-free W (defemb-fit), not centred", {"centred": False}),
        ("lambda chosen on validation (defemb-fit), not 1", {"lambda": "valid"}),
        ("held-out set E (make eval: 200 frequent/medium that spell a headword), not I", {"held": "E"}),
        ("predict from every occurrence in a span (defemb-predict), not whole variants only", {"predict_rows": "all"}),
        ("average over definitions (defemb-predict), not over read rows", {"average": "definitions"}),
        ("every held-out id masked at prediction (heldout split), not only the read one", {"predict_read": "hide"}),
        ("2,000 fit prompts, not 12,000", {"fit_prompts": 2000}),
        ("make eval's fit prompts (rare-weighted --limit 12000 corpus, its valid split), not uniform",
         {"fit_corpus": "eval"}),
        ("rank among all rows (specials, <mask>), not the non-special ones", {"candidates": "all rows"}),
    ]
    extras = [  # single changes from the uniform headword fit that make eval does not make
        ("every variant span masked, fit and prediction",
         {"fit_read": "spans", "predict_read": "spans"}),
        ("6,000 fit prompts", {"fit_prompts": 6000}),
        ("uniform prompts, their one-subword headwords only (fewer rows, same kind)",
         {"fit_corpus": "full", "fit_rows": "head"}),
        ("uniform prompts, every one-subword variant (any span)", {"fit_corpus": "full", "fit_rows": "whole"}),
        ("every variant span masked, fit on every headword subword of uniform prompts",
         {"fit_read": "spans", "predict_read": "spans", "fit_rows": "all"}),
        ("lambda 100", {"lambda": 100.0}),
        ("per (token, prompt) pair, no averaging", {"average": "prompt"}),
        ("mean of unit-length predictions", {"average": "unit"}),
        ("rank by squared L2 distance, not cosine", {"metric": "l2"}),
    ]
    table = [{"step": "the uniform headword fit", "cumulative": measure(issue), "alone": None, "settings": dict(issue)}]
    current = dict(issue)
    for label, change in steps:
        current = {**current, **change}
        table.append({"step": label, "cumulative": measure(current), "alone": measure({**issue, **change}),
                      "settings": dict(current)})
        print(label, *(m and round(m["MRR"], 4) for m in (table[-1]["cumulative"], table[-1]["alone"])), flush=True)
    fixes = [  # make eval's setup (the ladder's last row) with one of the fit's choices changed back
        ("make eval's setup, W fitted on the headword positions among its 2,000 prompts", {"fit_rows": "head"}),
        ("make eval's setup, lambda 1", {"lambda": 1.0}),
        ("make eval's setup, headword positions and lambda 1", {"fit_rows": "head", "lambda": 1.0}),
        ("make eval's setup, headword positions of 12,000 uniform prompts, lambda 1",
         {"fit_corpus": "full_head", "fit_prompts": None, "fit_rows": "head", "lambda": 1.0}),
    ]
    for label, change in fixes:
        table.append({"step": label, "cumulative": measure({**current, **change}), "alone": None,
                      "settings": {**current, **change}})
        print(label, table[-1]["cumulative"] and round(table[-1]["cumulative"]["MRR"], 4), flush=True)
    for label, change in extras:
        table.append({"step": label, "cumulative": None, "alone": measure({**issue, **change}),
                      "settings": {**issue, **change}})
        print(label, table[-1]["alone"] and round(table[-1]["alone"]["MRR"], 4), flush=True)
    return table


def ladder_markdown(table: list[dict]) -> str:
    def cell(m):
        return "" if m is None else f"{m['MRR']:.4f} / {m['hits@10']:.3f} / {m['median_rank']:,.0f}"
    lines = ["| step | cumulative: MRR / hits@10 / median rank | this change alone from the uniform headword fit | lambda |",
             "|---|---:|---:|---:|"]
    for row in table:
        m = row["cumulative"] or row["alone"]
        lam = "" if m is None else f"{m['lam_used']:g}"
        lines.append(f"| {row['step']} | {cell(row['cumulative'])} | {cell(row['alone'])} | {lam} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained-checkpoint", required=True)
    p.add_argument("--corpus", required=True, help="the full corpus (the uniform headword fit's)")
    p.add_argument("--eval-corpus", required=True, help="make eval's corpus (defemb-corpus --limit 12000 --holdout 200)")
    p.add_argument("--cache", required=True, help="directory of the cached states (one .pt per part)")
    p.add_argument("--out", required=True)
    p.add_argument("--heldout", type=int, default=400)
    p.add_argument("--id-range", default="1000,25000")
    p.add_argument("--samples", type=int, default=12000, help="prompts of the uniform headword fit")
    p.add_argument("--valid-samples", type=int, default=600,
                   help="validation prompts of the full corpus that choose lambda (a sample: CPU)")
    p.add_argument("--spans-samples", type=int, default=4000,
                   help="fit prompts read with every variant span masked (a subset of --samples: CPU)")
    p.add_argument("--eval-samples", type=int, default=2000, help="make eval's fit prompts (defemb-fit --samples)")
    p.add_argument("--cached-only", action="store_true",
                   help="no reading: the ladder on the parts already cached (steps needing others are skipped)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=4096)
    args = p.parse_args(argv)
    configure_cli_logging()
    features = feature_pass(args)
    table = ladder(args, features)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"candidates_I": features["candidates_i"], "held_I": len(features["held_i"]),
            "held_E": len(features["held_e"]),
            "parts": {name: {"states": len(p["targets"]), "prompts": len(np.unique(p["prompts"].numpy())),
                             "seconds": round(p["seconds"], 1)} for name, p in features["parts"].items()}}
    write_json(out / "ladder.json", {"options": vars(args), "meta": meta, "table": table})
    write_text(out / "ladder.md", ladder_markdown(table))
    print(ladder_markdown(table))
    print(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
