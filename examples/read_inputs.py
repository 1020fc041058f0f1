#!/usr/bin/env python
"""Which layer or pooling of the frozen encoder W should read: each a least-squares W, ranked on held-out tokens.

One pass of the frozen encoder over the fit's prompts (``defemb-fit``'s: 10,000 training prompts whose
headword is one subword, read there), the validation split (lambda's choice) and the held-out
prompts (both readings), keeping every layer's state at the read position and the last layer's
mean over the prompt (what ``--projection-input state+prompt-mean`` reads). Each input below is then
a ridge fit (lambda chosen on validation, as ``defemb-fit`` chooses it) and a ranking of the held-out
tokens' true rows among all rows by cosine (``fairseq_defemb.analysis.reconstruction``), a token's
prediction the mean over its read positions. The ``state`` row is ``defemb-fit --projection-input
state``'s W and ``state+prompt-mean`` its default's. Encoder-only models (``make eval``'s MiniLM).

    python examples/read_inputs.py --pretrained-checkpoint eval-out/original/model.pt \\
        --corpus eval-out/seed1/definitions --out read-inputs-s1
"""
import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fairseq_defemb.analysis.reconstruction import aggregate, score_tokens
from fairseq_defemb.atomic_io import write_json, write_text
from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.fit import (LAMBDA_GRID, ReadStates, build_definition_model, mimic_metrics, normal_equations,
                                read_positions, ridge_solution, sample_prompts)

READINGS = {"heldout": "paper prompt", "heldout_defonly": "definition only"}


class EveryLayer(nn.Module):
    """The definition model's encoder, read as ``fairseq_defemb.fit.read_states`` reads a model: at
    each read position, every layer's state (the embedding layer's output first), then the last
    layer's mean over the prompt's non-padding tokens, side by side."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        layers = len(model.encoder.sentence_encoder.layers)
        self.width = model.encoder.sentence_encoder.embed_tokens.embedding_dim  # RoBERTa: the hidden size
        self.blocks = layers + 2  # embedding output, every layer, the prompt's mean
        self.projection = nn.Linear(self.width * self.blocks, self.width, bias=False)  # read_states's row width

    def max_positions(self):
        return self.model.max_positions()

    def read_states(self, src_tokens, predict_mask, **_):
        _, extra = self.model.encoder.extract_features(src_tokens, return_all_hiddens=True)
        states = [s.transpose(0, 1) for s in extra["inner_states"]]  # B x T x C each
        keep = src_tokens.ne(self.model.encoder.sentence_encoder.padding_idx).unsqueeze(-1).to(states[-1].dtype)
        means = (states[-1] * keep).sum(1) / keep.sum(1)
        return torch.cat([s[predict_mask] for s in states] + [means[predict_mask.nonzero()[:, 0]]], dim=-1)


def inputs(layers: int) -> dict[str, list[int]]:
    """Name -> the blocks of ``EveryLayer``'s row it reads (0: embeddings, ``layers``: the last layer,
    ``layers + 1``: the prompt's mean); a name with "mean of" averages its blocks instead."""
    last, mean = layers, layers + 1
    named = {"state": [last], "state+prompt-mean": [last, mean]}
    named.update({f"layer {k}": [k] for k in range(last - 1, 0, -1)})
    named.update({f"mean of layers {last - 1}-{last}": [last - 1, last], f"mean of layers {last - 3}-{last}":
                  list(range(last - 3, last + 1)), f"layers {last - 1}, {last}": [last - 1, last],
                  f"layers {last - 2}-{last}": list(range(last - 2, last + 1)),
                  "every layer + prompt-mean": list(range(mean + 1)), "prompt-mean alone": [mean]})
    return named


def columns(states: torch.Tensor, name: str, blocks: list[int], width: int) -> torch.Tensor:
    parts = [states[:, b * width:(b + 1) * width] for b in blocks]
    return sum(parts) / len(parts) if name.startswith("mean of") else torch.cat(parts, dim=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained-checkpoint", required=True, help="the converted encoder's model.pt")
    parser.add_argument("--corpus", required=True, help="a defemb-corpus --holdout corpus of its vocabulary")
    parser.add_argument("--out", required=True, help="folder for read_inputs.json and read_inputs.md")
    parser.add_argument("--samples", type=int, default=10000, help="fit prompts (defemb-fit's default)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    configure_cli_logging(logging.WARNING)  # no fairseq data-loading chatter
    corpus = Path(args.corpus)
    model, task, _ = build_definition_model(pretrained_checkpoint=args.pretrained_checkpoint, corpus=corpus,
                                            projection_input="state", seed=args.seed)
    reader = EveryLayer(model)
    train, valid = (task.build_cloze_dataset(s, predict=True) for s in ("train", "valid"))
    fit = read_positions(reader, train, sample_prompts(train, args.samples, args.seed, headword_only=True), "headword")
    choose = read_positions(reader, valid, sample_prompts(valid, None, args.seed, headword_only=True), "headword")
    heldout = {split: read_positions(reader, task.build_cloze_dataset(split, predict=True), None, "every")
               for split in READINGS}
    ids = np.array([int(t) for t in (corpus / "holdout_ids.txt").read_text().split()])
    matrix = model.target_embeddings.detach().cpu()
    rows, width = {}, reader.width
    for name, blocks in inputs(reader.blocks - 2).items():
        def sub(read: ReadStates) -> ReadStates:
            return ReadStates(columns(read.states, name, blocks, width), read.targets, read.definitions, read.prompts,
                              read.positions)
        xtx, xty = normal_equations(sub(fit), matrix)
        on = sub(choose)
        lam = min(LAMBDA_GRID, key=lambda c: mimic_metrics(on.states @ ridge_solution(xtx, xty, c).T, on, matrix)["loss"])
        w = ridge_solution(xtx, xty, lam)
        rows[name] = {"lambda": lam, "reads": int(w.shape[1])}
        for split, read in heldout.items():
            h = sub(read)
            predicted = (h.states @ w.T).double()
            targets = h.targets.numpy()
            means = np.stack([predicted[targets == t].mean(0).numpy() for t in ids])
            rows[name][split] = aggregate(score_tokens(means, ids, matrix.numpy()), np.ones(len(ids), dtype=bool))
        print(f"{name}: " + " | ".join(f"{READINGS[s]} MRR {rows[name][s]['mrr']:.3f}" for s in READINGS), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| W reads | inputs | lambda | paper prompt: MRR / hits@10 / median rank | definition only: MRR / median rank |",
             "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        p, d = r["heldout"], r["heldout_defonly"]
        lines.append(f"| {name} | {r['reads']} | {r['lambda']:g} | {p['mrr']:.3f} / {p['hits@10']:.2f} / "
                     f"{p['median_rank']:.0f} | {d['mrr']:.3f} / {d['median_rank']:.0f} |")
    write_json(out / "read_inputs.json", {"seed": args.seed, "fit_states": len(fit.targets), "rows": rows})
    write_text(out / "read_inputs.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
