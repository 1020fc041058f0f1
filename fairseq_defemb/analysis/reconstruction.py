"""``defemb-analyze reconstruction``: does a definition give a held-out token its embedding?

For the tokens a corpus holds out (``defemb-corpus --holdout``), every initialiser is scored
against the true pretrained rows on the same tokens:

1. ``mean row``: the mean of all rows (transformers' ``resize_token_embeddings(mean_resizing=True)``,
   unsloth, axolotl);
2. ``definition mean``: the mean of the embeddings of the definition's own tokens (LlamaFactory's
   description init), per definition, then averaged over the token's definitions; held-out ids
   and specials are left out of the mean, as the definition model never sees them either;
3. ``subword``: the mean of the embeddings of the pieces the tokenizer gives the token's own text
   without the token in its vocabulary (Hewitt's vocabulary-expansion note, FOCUS);
4. ``random``: N(0, s^2) with s the standard deviation of all entries of the matrix (the old
   default), seeded;
5. every ``defemb-predict`` file given (DefinitionEMB, its ablations, fitted baselines).

Metrics per token: cosine and squared L2 distance to the true row, and the rank of the true row
among **all** rows of the matrix by cosine to the prediction (1 + the number of other rows whose
cosine is >= the true row's: ties count against the prediction, so a zero vector ranks last).
Aggregates per frequency group: mean cosine, mean squared distance, MRR, hits@1, hits@10,
median rank. A paired bootstrap (Koehn 2004) compares each prediction file's reciprocal ranks
(and cosines) with the best baseline's on the same tokens.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairseq_defemb.analysis.frequency_groups import frequency_groups
from fairseq_defemb.analysis.significance import paired_bootstrap
from fairseq_defemb.atomic_io import atomic_output_dir, naming_failed_writes, write_json

INITIALISERS = ("mean row", "definition mean", "subword", "random")
METRICS = ("cosine", "sq_distance", "mrr", "hits@1", "hits@10", "hits@100", "median_rank", "norm_ratio")


class ReconstructionError(ValueError):
    """Inputs that cannot be compared; the message names the file and the fix."""


@dataclass
class TokenScores:
    """Per held-out token (aligned with the report's ``ids``)."""

    cosine: np.ndarray
    sq_distance: np.ndarray
    rank: np.ndarray
    norm_ratio: np.ndarray  # |prediction| / |true row|: the scale a prediction restores


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def score_tokens(predicted: np.ndarray, ids: np.ndarray, matrix: np.ndarray, chunk: int = 256) -> TokenScores:
    """Cosine, squared distance and rank of the true row ``matrix[ids[i]]`` among all rows by
    cosine to ``predicted[i]`` (1 = best; rows tied with the true one rank before it)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    true = matrix[ids]
    units = _unit_rows(matrix)
    ranks = np.empty(len(ids), dtype=np.int64)
    for start in range(0, len(ids), chunk):
        p = _unit_rows(predicted[start:start + chunk])
        cos = p @ units.T
        own = cos[np.arange(len(p)), ids[start:start + chunk]]
        ranks[start:start + chunk] = (cos >= own[:, None]).sum(axis=1)  # counts the true row itself once
    cosine = (_unit_rows(predicted) * _unit_rows(true)).sum(axis=1)
    norms = np.linalg.norm(true, axis=1)
    ratio = np.divide(np.linalg.norm(predicted, axis=1), norms, out=np.zeros(len(ids)), where=norms > 0)
    return TokenScores(cosine=cosine, sq_distance=((predicted - true) ** 2).sum(axis=1), rank=ranks, norm_ratio=ratio)


def aggregate(scores: TokenScores, where: np.ndarray) -> dict:
    """The report's metrics over the tokens selected by boolean ``where``."""
    rank = scores.rank[where]
    if not len(rank):
        return {"n": 0}
    return {"n": int(len(rank)), "cosine": float(scores.cosine[where].mean()),
            "sq_distance": float(scores.sq_distance[where].mean()), "mrr": float((1.0 / rank).mean()),
            "hits@1": float((rank <= 1).mean()), "hits@10": float((rank <= 10).mean()),
            "hits@100": float((rank <= 100).mean()), "median_rank": float(np.median(rank)),
            "norm_ratio": float(scores.norm_ratio[where].mean())}


# -- the initialisers ---------------------------------------------------------------------------

def mean_row_init(matrix: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.broadcast_to(matrix.astype(np.float64).mean(axis=0), (len(ids), matrix.shape[1])).copy()


def random_init(matrix: np.ndarray, ids: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, float(matrix.std()), size=(len(ids), matrix.shape[1]))


def definition_mean_init(matrix: np.ndarray, ids: np.ndarray, prompts: list[np.ndarray], spans: list[np.ndarray],
                         definition_starts: list[int], excluded: set[int]) -> tuple[np.ndarray, int]:
    """Per token: the mean over the prompts where it is in a headword span of the mean row of
    that prompt's definition tokens (``prompt[definition_start:-1]``, ``excluded`` ids left out).
    Returns (vectors, tokens without any usable definition token: zero vectors)."""
    slot = {int(t): i for i, t in enumerate(ids)}
    sums = np.zeros((len(ids), matrix.shape[1]))
    counts = np.zeros(len(ids))
    for prompt, span, start in zip(prompts, spans, definition_starts):
        words = [int(t) for t in prompt[start:-1] if int(t) not in excluded]
        if not words:
            continue
        vector = matrix[words].astype(np.float64).mean(axis=0)
        for token in {int(t) for s, e in span.reshape(-1, 2) for t in prompt[s:e]} & slot.keys():
            sums[slot[token]] += vector
            counts[slot[token]] += 1
    out = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    return out, int((counts == 0).sum())


def subword_init(matrix: np.ndarray, ids: np.ndarray, split_without, excluded: set[int]) -> tuple[np.ndarray, int]:
    """Mean row of ``split_without(token)``'s pieces (``excluded`` ids dropped); returns
    (vectors, tokens no other piece spells: zero vectors)."""
    out = np.zeros((len(ids), matrix.shape[1]))
    empty = 0
    for i, token in enumerate(ids):
        pieces = [p for p in split_without(int(token)) if p not in excluded]
        if pieces:
            out[i] = matrix[pieces].astype(np.float64).mean(axis=0)
        else:
            empty += 1
    return out, empty


# -- inputs -----------------------------------------------------------------------------------

def load_prediction(path: str | Path, ids: np.ndarray, dictionary_sha256: str, matrix: np.ndarray) -> np.ndarray:
    """The rows of a ``defemb-predict`` file for ``ids``; an error if it was made for another
    dictionary or lacks a held-out token."""
    from fairseq_defemb.data.embedding_file import PredictedEmbeddings

    pred = PredictedEmbeddings.load(path)
    if pred.dictionary_sha256 != dictionary_sha256 or pred.dictionary_size != len(matrix):
        raise ReconstructionError(
            f"{path}: predictions for another dictionary (hash {pred.dictionary_sha256[:12]}, {pred.dictionary_size} rows; "
            f"the corpus's dict.txt is {dictionary_sha256[:12]}, {len(matrix)} rows); predict with the corpus's checkpoint"
        )
    if pred.embedding_dim != matrix.shape[1]:
        raise ReconstructionError(f"{path}: {pred.embedding_dim}-dimensional predictions, the matrix has {matrix.shape[1]}")
    slot = {int(t): i for i, t in enumerate(pred.token_ids.tolist())}
    missing = [int(t) for t in ids if int(t) not in slot]
    if missing:
        raise ReconstructionError(
            f"{path}: no prediction for {len(missing)} of the {len(ids)} held-out tokens (e.g. {missing[:5]}); predict "
            "them with defemb-predict --splits heldout (or heldout_defonly) --token-ids CORPUS/holdout_ids.txt"
        )
    return pred.embeddings.numpy()[[slot[int(t)] for t in ids]].astype(np.float64)


def reconstruction_report(*, matrix: np.ndarray, corpus_dir: str | Path, predictions: dict[str, str | Path],
                          system: str | None = None, baseline_predictions: dict[str, str | Path] | None = None,
                          split_without=None, seed: int = 1, resamples: int = 1000) -> dict:
    """Score the initialisers and the prediction files on the held-out tokens of ``corpus_dir``.

    ``matrix``: the pretrained embedding matrix (rows = the corpus's dict.txt + ``<mask>``).
    ``predictions``: name -> ``defemb-predict`` file, each bootstrapped against the best baseline;
    ``system`` (default: the first) is the one the tables mark. ``baseline_predictions``: learned baselines (e.g. a
    fitted W) that compete with the four initialisers for "best baseline". ``split_without``: the
    corpus tokenizer's ``split_without`` (``SubwordBackend``); None skips the subword initialiser.
    """
    from preprocess.corpus.holdout import DEFINITION_ONLY_SPLIT, HELDOUT_SPLIT, HOLDOUT_FILE, load_holdout
    from fairseq_defemb.data.corpus_format import DICT_FILE, check_corpus_dictionary, load_split
    from fairseq_defemb.data.vocabulary import dictionary_sha256, load_model_dictionary

    corpus_dir = Path(corpus_dir)
    check_corpus_dictionary(corpus_dir)
    holdout = load_holdout(corpus_dir)
    if holdout is None:
        raise ReconstructionError(f"{corpus_dir}: no {HOLDOUT_FILE}; build the corpus with defemb-corpus --holdout N")
    dictionary = load_model_dictionary(corpus_dir / DICT_FILE)
    matrix = np.asarray(matrix)
    if len(matrix) != len(dictionary):
        raise ReconstructionError(
            f"the embedding matrix has {len(matrix)} rows but {corpus_dir / DICT_FILE} (+ <mask>) gives {len(dictionary)}: "
            "pass the checkpoint the corpus was built for"
        )
    ids = np.asarray(holdout["ids"], dtype=np.int64)
    bad = ids[(ids < dictionary.nspecial) | (ids >= len(matrix))]
    if len(bad):
        raise ReconstructionError(f"{corpus_dir / HOLDOUT_FILE}: ids {bad[:5].tolist()} outside the dictionary's symbols")
    predictions = dict(predictions)
    baseline_predictions = dict(baseline_predictions or {})
    if not predictions:
        raise ReconstructionError("no prediction file: pass at least DefinitionEMB's (NAME=PATH)")
    system = system or next(iter(predictions))
    if system not in predictions:
        raise ReconstructionError(f"--system {system}: not among the predictions ({', '.join(predictions)})")
    sha = dictionary_sha256(corpus_dir / DICT_FILE)
    # every file is read before anything is scored, so bad input stops before any output
    loaded = {name: load_prediction(path, ids, sha, matrix) for name, path in {**predictions, **baseline_predictions}.items()}

    excluded = set(range(dictionary.nspecial)) | {dictionary.index("<mask>"), dictionary.unk()} | set(ids.tolist())
    heldout = load_split(corpus_dir, HELDOUT_SPLIT)
    prompts = [heldout.prompts[i].numpy() for i in range(len(heldout))]
    spans = [heldout.spans[i].numpy() for i in range(len(heldout))]
    vectors, notes = {}, {}
    vectors["mean row"] = mean_row_init(matrix, ids)
    vectors["definition mean"], empty = definition_mean_init(matrix, ids, prompts, spans,
                                                             holdout["definition_start"][HELDOUT_SPLIT], excluded)
    notes["definition mean"] = f"{empty} tokens without a usable definition token (zero vector)"
    if split_without is not None:
        vectors["subword"], empty = subword_init(matrix, ids, split_without, excluded - set(ids.tolist()))
        notes["subword"] = f"{empty} tokens no other piece spells (zero vector)"
    else:
        notes["subword"] = "not computed: pass the corpus's WordPiece vocab.txt or GPT-2 encoder.json and vocab.bpe"
    vectors["random"] = random_init(matrix, ids, seed)
    vectors.update(loaded)

    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))
    group_masks = {g: np.isin(ids, groups[g]) for g in ("frequent", "medium", "rare")}
    group_masks = {g: m for g, m in group_masks.items() if m.any()}
    group_masks["all"] = np.ones(len(ids), dtype=bool)
    scores = {name: score_tokens(v, ids, matrix) for name, v in vectors.items()}
    methods = {name: {g: aggregate(s, m) for g, m in group_masks.items()} for name, s in scores.items()}
    # how alike a method's predictions are (1.0: one vector for every token, as the mean row)
    collapse = {name: float((_unit_rows(v) @ _unit_rows(v.mean(axis=0, keepdims=True)).T).mean())
                for name, v in vectors.items()}
    baselines = [n for n in vectors if n in INITIALISERS or n in baseline_predictions]
    best = max(baselines, key=lambda n: methods[n]["all"]["mrr"])
    bootstrap = {name: {
        "reciprocal_rank": paired_bootstrap(1.0 / scores[best].rank, 1.0 / scores[name].rank, resamples, seed),
        "cosine": paired_bootstrap(scores[best].cosine, scores[name].cosine, resamples, seed),
    } for name in predictions}
    return {
        "corpus": str(corpus_dir), "holdout_chosen_by": holdout["chosen_by"], "num_tokens": int(len(ids)),
        "heldout_prompts": holdout["prompts"], "candidate_rows": int(len(matrix)),
        "predictions": {n: str(p) for n, p in predictions.items()},
        "baseline_predictions": {n: str(p) for n, p in baseline_predictions.items()},
        "system": system, "best_baseline": best, "baselines": baselines, "notes": notes,
        "methods": methods, "bootstrap": bootstrap, "seed": seed, "collapse": collapse,
        "splits_note": f"predictions are read from {HELDOUT_SPLIT} (prompt as in the paper) or {DEFINITION_ONLY_SPLIT} "
                       "(other variants removed), whichever each file was predicted on",
        "per_token": {"ids": ids.tolist(), **{n: {"cosine": s.cosine.round(5).tolist(), "rank": s.rank.tolist()}
                                              for n, s in scores.items()}},
    }


def reconstruction_markdown(report: dict) -> str:
    """The report as tables: one per frequency group, methods as rows, then the bootstrap."""
    lines = [f"Held-out reconstruction: {report['num_tokens']} tokens ({report['holdout_chosen_by']}); rank of the "
             f"true row among all {report['candidate_rows']:,} rows by cosine (ties against the prediction).", ""]
    for group in next(iter(report["methods"].values())):
        n = next(iter(report["methods"].values()))[group]["n"]
        lines += [f"**{group}** ({n} tokens)", "", "| initialiser | cosine | sq. distance | MRR | hits@1 | hits@10 | hits@100 | median rank |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, entry in report["methods"].items():
            m = entry[group]
            mark = " (system)" if name == report["system"] else " (best baseline)" if name == report["best_baseline"] else ""
            lines.append(f"| {name}{mark} | {m['cosine']:.3f} | {m['sq_distance']:.3f} | {m['mrr']:.4f} | "
                         f"{m['hits@1']:.3f} | {m['hits@10']:.3f} | {m['hits@100']:.3f} | {m['median_rank']:.0f} |")
        lines.append("")
    for name, tests in report["bootstrap"].items():
        for metric, b in tests.items():
            lines.append(f"Paired bootstrap, {metric}: {name} {b['system_mean']:.4f} vs {report['best_baseline']} "
                         f"{b['baseline_mean']:.4f} (delta {b['delta']:+.4f}, 95% CI [{b['ci95'][0]:+.4f}, "
                         f"{b['ci95'][1]:+.4f}], p = {b['p_value']:.3f}, {b['resamples']} resamples).")
    lines += ["", "Collapse (mean cosine of each prediction to the method's mean prediction; 1.0 = one vector for all): "
              + ", ".join(f"{name} {c:.3f}" for name, c in report["collapse"].items()) + "."]
    lines += [""] + [f"- {name}: {note}" for name, note in report["notes"].items()]
    return "\n".join(lines) + "\n"


def corpus_split_without(corpus_dir: str | Path, **tokenizer_files: str | None):
    """The ``split_without`` of the tokenizer the corpus was built with (its kind and casing from
    corpus.json, its files from ``tokenizer_files``: wordpiece_vocab, or gpt2_encoder_json and
    gpt2_vocab_bpe); None when the files are not given or the tokenizer is sentencepiece."""
    from preprocess.corpus.tokenizers import backend_from_config, load_dictionary
    from fairseq_defemb.data.corpus_format import DICT_FILE, read_metadata

    tokenizer = read_metadata(corpus_dir).get("tokenizer", {})
    needed = {"gpt2": ("gpt2_encoder_json", "gpt2_vocab_bpe"), "wordpiece": ("wordpiece_vocab",)}.get(tokenizer.get("bpe"))
    if not needed or not all(tokenizer_files.get(k) for k in needed):
        return None
    dict_path = str(Path(corpus_dir) / DICT_FILE)
    config = {**tokenizer, **{k: str(v) for k, v in tokenizer_files.items() if v}, "vocab": dict_path}
    return backend_from_config(config, load_dictionary(dict_path)).split_without


def analyze_reconstruction(checkpoint: str | Path, corpus_dir: str | Path, out: str | Path, *,
                           predictions: dict[str, str | Path], baseline_predictions: dict[str, str | Path] | None = None,
                           system: str | None = None, tokenizer_files: dict[str, str | None] | None = None,
                           seed: int = 1, resamples: int = 1000, overwrite: bool = False) -> dict:
    """``defemb-analyze reconstruction``: read the pretrained matrix of ``checkpoint``, score
    (``reconstruction_report``) and write ``out``/report.json and summary.md atomically. Every
    input is checked before anything is written; an existing ``out`` is kept unless ``overwrite``."""
    from fairseq_defemb.analysis.report import read_matrix

    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"--out {out}: exists; pick a new directory or pass --overwrite")
    report = reconstruction_report(
        matrix=read_matrix(checkpoint), corpus_dir=corpus_dir, predictions=predictions,
        baseline_predictions=baseline_predictions, system=system,
        split_without=corpus_split_without(corpus_dir, **(tokenizer_files or {})), seed=seed, resamples=resamples)
    report["checkpoint"] = str(checkpoint)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        with naming_failed_writes(Path(out) / "report.json"):
            write_json(tmp / "report.json", report)
        with naming_failed_writes(Path(out) / "summary.md"):
            (tmp / "summary.md").write_text(reconstruction_markdown(report))
    return report
