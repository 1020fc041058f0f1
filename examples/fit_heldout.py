#!/usr/bin/env python
"""Held-out reconstruction by the closed-form W (the row "frozen encoder + ridge W, last layer").

Holds out ``--heldout`` tokens whose headword variant is a single subword, with ids in
``--id-range``; fits W (fairseq_defemb.fit: frozen model, one mask at a time, bias-free ridge) on
``--samples`` prompts that define none of them, lambda chosen on the validation prompts that
define none of them; predicts each held-out token from its own definitions (mean over the
prompts where it is a whole variant, as defemb-predict averages) and ranks its true pretrained
row among all non-special rows by cosine.
Rows: two trivial baselines, the fit as the model holds it (bias-free), the centred fit (a
bias the model cannot hold, for reference), and the fit with --mask-headword-everywhere.
This is the measurement behind docs/definition-model.md's held-out table; the general held-out tool is
``defemb-analyze reconstruction``.

    python examples/fit_heldout.py --pretrained-checkpoint minilm/model.pt --corpus defs --out fit-heldout
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fairseq_defemb.atomic_io import write_json, write_text
from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.data.headword import echo_positions
from fairseq_defemb.fit import (LAMBDA_GRID, ReadStates, build_definition_model, mimic_metrics, normal_equations, read_states,
                        ridge_solution, sample_prompts)


def single_subword_tokens(dataset, low: int, high: int) -> np.ndarray:
    """Ids in [low, high) that are a whole one-subword variant span somewhere in ``dataset``."""
    ids = set()
    for i in range(len(dataset.corpus)):
        prompt = dataset.corpus.prompts[i].numpy()
        ids.update(int(prompt[s]) for s, e in dataset.corpus.spans_of(i).tolist() if e - s == 1 and low <= prompt[s] < high)
    return np.array(sorted(ids))


def rank_metrics(predicted: torch.Tensor, token_ids: torch.Tensor, embeddings: torch.Tensor, first_row: int) -> dict:
    """Rank of each true row among rows ``first_row:`` by cosine to its prediction."""
    rows = F.normalize(embeddings[first_row:].double(), dim=-1)
    scores = F.normalize(predicted.double(), dim=-1) @ rows.T
    true = scores[torch.arange(len(token_ids)), token_ids - first_row]
    ranks = 1 + (scores > true[:, None]).sum(1)
    return {"MRR": round(float((1.0 / ranks).mean()), 4), "hits@10": round(float((ranks <= 10).double().mean()), 3),
            "median_rank": int(ranks.median()), "cos": round(float(true.mean()), 3), "rows_ranked": len(rows)}


def per_token_mean(values: torch.Tensor, targets: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` rows per id of ``token_ids`` (rows labelled by ``targets``)."""
    slot = {int(t): i for i, t in enumerate(token_ids)}
    index = torch.tensor([slot[int(t)] for t in targets])
    sums = torch.zeros(len(token_ids), values.size(1), dtype=torch.float64).index_add_(0, index, values.double())
    return (sums / torch.bincount(index, minlength=len(token_ids))[:, None]).float()


def defining_prompts(dataset, held: np.ndarray) -> np.ndarray:
    """Prompts in which a held-out id is a whole one-subword variant: the held-out tokens' own
    definitions (not every word that merely contains the subword)."""
    held_set = set(held.tolist())
    return np.array([i for i in range(len(dataset.corpus)) if any(
        e - s == 1 and int(dataset.corpus.prompts[i][s]) in held_set for s, e in dataset.corpus.spans_of(i).tolist())],
        dtype=np.int64)


def heldout_states(model, datasets, held: np.ndarray, max_tokens: int) -> tuple[ReadStates, list]:
    """States at the held-out ids in their own definitions, and those (split, prompt) pairs."""
    parts, prompts = [], []
    for name, dataset in datasets.items():
        which = defining_prompts(dataset, held)
        read = read_states(model, dataset, which, max_tokens=max_tokens)
        keep = torch.from_numpy(np.isin(read.targets.numpy(), held))
        parts.append(ReadStates(read.states[keep], read.targets[keep], read.definitions[keep], read.prompts))
        prompts += [(name, int(p)) for p in which]
    return ReadStates(torch.cat([p.states for p in parts]), torch.cat([p.targets for p in parts]),
                      torch.cat([p.definitions for p in parts]), sum(p.prompts for p in parts)), prompts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained-checkpoint", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True, help="directory for heldout-PROMPTS.json and .md")
    p.add_argument("--heldout", type=int, default=400)
    p.add_argument("--id-range", default="1000,25000")
    p.add_argument("--samples", type=int, default=12000, help="training prompts of other tokens to fit on")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--prompts", default="paper,masked",
                   help="which prompts: 'paper' (other variants visible), 'masked' (--mask-headword-everywhere), or both")
    args = p.parse_args(argv)
    configure_cli_logging()
    low, high = map(int, args.id_range.split(","))
    results, meta = {}, {}
    for everywhere in [{"paper": False, "masked": True}[name] for name in args.prompts.split(",")]:
        model, task, _ = build_definition_model(pretrained_checkpoint=args.pretrained_checkpoint, corpus=args.corpus,
                                                mask_headword_everywhere=everywhere, seed=args.seed)
        model.eval()
        embeddings = model.target_embeddings
        datasets = {s: task.build_cloze_dataset(s, predict=True) for s in ("train", "valid")}
        if not meta:
            candidates = np.union1d(*(single_subword_tokens(d, low, high) for d in datasets.values()))
            held = np.sort(np.random.default_rng(args.seed).choice(candidates, size=args.heldout, replace=False))
            meta = {"candidates": len(candidates), "heldout": len(held)}
        held_set = set(held.tolist())
        tag = "every headword id masked" if everywhere else "paper's prompt"
        start = time.perf_counter()
        fit = read_states(model, datasets["train"], sample_prompts(datasets["train"], args.samples, args.seed, held_set),
                          max_tokens=args.max_tokens, progress=True, desc=f"fit, {tag}")
        valid = read_states(model, datasets["valid"], sample_prompts(datasets["valid"], None, args.seed, held_set),
                            max_tokens=args.max_tokens, progress=True, desc=f"valid, {tag}")
        heldout, heldout_prompts = heldout_states(model, datasets, held, args.max_tokens)
        read_seconds = time.perf_counter() - start
        xtx, xty = normal_equations(fit, embeddings)
        grid = {lam: mimic_metrics(valid.states @ ridge_solution(xtx, xty, lam).T, valid, embeddings)["loss"]
                for lam in LAMBDA_GRID}
        lam = min(grid, key=grid.get)
        ids = torch.from_numpy(held)
        w = ridge_solution(xtx, xty, lam)
        results[f"frozen encoder + ridge W (bias-free, as the model holds it), {tag}"] = {
            **rank_metrics(per_token_mean(heldout.states @ w.T, heldout.targets, ids), ids, embeddings, task.dictionary.nspecial),
            "lambda": lam, "valid_loss": grid[lam]}
        if not everywhere:  # the baselines do not depend on the prompt's masking
            # Centred: ybar + W_c (h - xbar); the bias is what Eq. 4's W cannot hold.
            n = len(fit.targets)
            xbar = fit.states.double().mean(0)
            ybar = embeddings[fit.targets].double().mean(0)
            w_c = ridge_solution(xtx - n * torch.outer(xbar, xbar), xty - n * torch.outer(xbar, ybar), lam)
            centred = (heldout.states.double() - xbar) @ w_c.T.double() + ybar
            results[f"frozen encoder + ridge W, centred (with a bias), {tag}"] = {
                **rank_metrics(per_token_mean(centred, heldout.targets, ids), ids, embeddings, task.dictionary.nspecial),
                "lambda": lam}
            mean_row = embeddings[task.dictionary.nspecial:].double().mean(0).expand(len(ids), -1)
            definition_means, echoes = [], 0
            for split, prompt_idx in heldout_prompts:
                corpus = datasets[split].corpus
                prompt, spans = corpus.prompts[prompt_idx].numpy().astype(np.int64), corpus.spans_of(prompt_idx).numpy()
                echoes += len(echo_positions(prompt, spans)) > 0
                outside = np.ones(len(prompt), dtype=bool)
                for s, e in spans:
                    outside[s:e] = False
                outside[[0, -1]] = False  # <s>, </s>
                mean = embeddings[torch.from_numpy(prompt[outside])].double().mean(0)
                definition_means += [(int(t), mean) for t in set(prompt[np.concatenate([np.arange(s, e) for s, e in spans])].tolist())
                                     if t in held_set]
            by_definition = per_token_mean(torch.stack([m for _, m in definition_means]),
                                           torch.tensor([t for t, _ in definition_means]), ids)
            results = {"mean row": rank_metrics(mean_row, ids, embeddings, task.dictionary.nspecial),
                       "mean of the definition's token embeddings":
                           rank_metrics(by_definition, ids, embeddings, task.dictionary.nspecial), **results}
            meta.update(heldout_prompts=len(heldout_prompts), heldout_prompts_with_headword_echo=echoes)
        meta[tag] = {"fit_prompts": fit.prompts, "fit_states": len(fit.targets), "valid_prompts": valid.prompts,
                     "heldout_states": len(heldout.targets), "read_seconds": round(read_seconds, 1),
                     "lambda_grid_valid_loss": {repr(k): v for k, v in grid.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"heldout-{args.prompts.replace(',', '-')}"
    write_json(out / f"{stem}.json", {"options": vars(args), "meta": meta, "results": results})
    lines = ["| initialiser (held-out tokens) | MRR | hits@10 | median rank | cos |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r['MRR']:.4f} | {r['hits@10']:.3f} | {r['median_rank']:,} | {r['cos']:.3f} |"
              for name, r in results.items()]
    write_text(out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
