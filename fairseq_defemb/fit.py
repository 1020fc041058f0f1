"""A closed-form W: the definition model that needs no training.

One pass of the **frozen** pretrained model over a sample of training prompts, corrupted
and read exactly as deterministic prediction does (encoder-only: one headword subword
masked at a time, read at its own position k; BART: every variant span one ``<mask>``,
the decoder state that reads g(k)), gives the states h_{g(k)} (rows of X) and the
pretrained embedding rows e(p_k) (rows of Y). W is their ridge regression::

    W^T = argmin_B ||Y - X B||^2 + lambda ||B||^2 = (X^T X + lambda I)^{-1} X^T Y     (float64)

**No intercept, no centring.** Eq. 4's W is bias-free, and the fit must be what the model
computes: a centred fit predicts ybar + W (h - xbar), an offset the bias-free model cannot
add, so the checkpoint would not reproduce the fitted predictions. Fitted uncentred, it
does exactly. (The last hidden state leaves a LayerNorm with a bias, so X has a large
common component W can use as an intercept; the held-out measurement in
docs/definition-model.md reports the centred fit beside it.)

lambda is given, or the value of ``LAMBDA_GRID`` with the lowest Eq. 5 loss on a sample of
the validation split. Two users: ``defemb-fit`` (a training-free definition checkpoint
``defemb-predict`` reads) and ``definition_cloze --projection-init least-squares`` (the
warm start of training)::

    model, task, cfg = build_definition_model(pretrained_checkpoint="roberta.base/model.pt", corpus="defs-bin")
    report = fit_projection(model, task, samples=10000)      # sets model.projection.weight
"""
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fairseq_defemb.options import FIT_POSITIONS

logger = logging.getLogger(__name__)

LAMBDA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
# Which read states W regresses from: every headword subword (what training's targets are), or
# only the headword as written when it is one subword (a whole token, what a new row is).
# float64 rows of Y built at once when accumulating X^T Y: bounds memory for large vocabularies.
CHUNK_ROWS = 8192


@dataclass
class ReadStates:
    """What the frozen model reads for a set of prompts, one row per read position."""

    states: torch.Tensor  # (n, h_s) float32: h_{g(k)}
    targets: torch.Tensor  # (n,) long: p_k, the id whose pretrained row is the target
    definitions: torch.Tensor  # (n,) long: the prompt of each row, for Eq. 5's per-definition mean
    prompts: int  # prompts read
    # (n,) long: the column each row was read at (the prompt position; BART: the decoder's), so a
    # caller can tell a headword's own position from a piece of another variant
    positions: torch.Tensor | None = None
    too_long: int = 0  # items left unread: longer than the model's positions (as fairseq-train skips them)

    def subset(self, keep: torch.Tensor) -> "ReadStates":
        """The rows ``keep`` selects (of the same prompts)."""
        return ReadStates(self.states[keep], self.targets[keep], self.definitions[keep], self.prompts,
                          self.positions[keep], self.too_long)


def headword_read_positions(dataset) -> np.ndarray:
    """Per prompt, where its headword as written (the first variant) is read when it is one subword:
    the first span's start (encoder-only) or decoder position 1 (BART: the target after the first
    sentinel); -1 when it is several subwords."""
    a = dataset.arrays
    first = a.first_span[:-1]  # every prompt has a span (defemb-corpus writes at least one)
    one = (a.span_end[first] - a.span_begin[first]) == 1
    return np.where(one, 1 if dataset.corruption == "sentinel" else a.span_begin[first].astype(np.int64), -1)


def headword_prompts(dataset) -> np.ndarray:
    """Prompts whose first variant (the headword as written) is one subword, ascending."""
    return np.nonzero(headword_read_positions(dataset) >= 0)[0]


def headword_rows(read: ReadStates, dataset) -> torch.Tensor:
    """Which rows of ``read`` are a one-subword headword read at its own position."""
    where = headword_read_positions(dataset)[read.definitions.numpy()]
    return torch.from_numpy(read.positions.numpy() == where)


def sample_prompts(dataset, samples: int | None, seed: int, exclude_token_ids: set[int] | None = None,
                   headword_only: bool = False) -> np.ndarray:
    """Up to ``samples`` prompts of ``dataset`` (all if None), uniformly without replacement, sorted;
    prompts with a headword subword in ``exclude_token_ids`` (held-out tokens) are never drawn;
    ``headword_only``: only prompts whose headword is one subword (``headword_prompts``)."""
    prompts = headword_prompts(dataset) if headword_only else np.arange(len(dataset.corpus))
    if exclude_token_ids:
        occurrences = dataset.occurrences
        hit = np.isin(occurrences[:, 2], np.fromiter(exclude_token_ids, dtype=np.int64))
        prompts = np.setdiff1d(prompts, occurrences[hit, 0])
    if samples is not None and samples < len(prompts):
        prompts = np.sort(np.random.default_rng(seed).choice(prompts, size=samples, replace=False))
    return prompts


def read_states(model, dataset, prompts: np.ndarray | None = None, *, items: np.ndarray | None = None,
                max_tokens: int = 8192, batch_size: int | None = None, progress: bool = False,
                desc: str = "read") -> ReadStates:
    """``model.read_states`` (h_{g(k)} before W) for every item of ``dataset`` whose prompt is in
    ``prompts`` (all if None) and whose index is in ``items`` (all if None: with one mask at a time
    an item is one headword occurrence, a row of ``dataset.occurrences``), in eval mode without
    gradients; the model's mode is restored. Items longer than the model's positions are left out
    and counted (``too_long``): the model cannot read them, and fairseq-train skips them too."""
    from fairseq import utils

    device = next(model.parameters()).device
    order = dataset.ordered_indices()
    if prompts is not None:
        order = order[np.isin(dataset.item_prompts()[order], prompts)]
    if items is not None:
        order = order[np.isin(order, items)]
    order, too_long = dataset.filter_indices_by_size(order, model.max_positions())
    batches = dataset.batch_by_size(order, max_tokens=max_tokens, max_sentences=batch_size)
    states, targets, definitions, positions = [], [], [], []
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress):
            sample = dataset.collate_indices(batch)
            net_input = utils.move_to_cuda(sample["net_input"]) if device.type == "cuda" else sample["net_input"]
            # no_grad, not inference_mode: the warm start trains this model next, and tensors a module
            # caches during an inference-mode pass (fairseq's positional tables) could not join autograd
            with torch.no_grad():
                states.append(model.read_states(**net_input).float().cpu())
            targets.append(sample["target"])
            definitions.append(sample["definition"][sample["target_row"]])
            positions.append(sample["net_input"]["predict_mask"].nonzero()[:, 1])
    finally:
        model.train(was_training)
    dim = model.projection.in_features
    return ReadStates(
        states=torch.cat(states) if states else torch.zeros(0, dim),
        targets=torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long),
        definitions=torch.cat(definitions) if definitions else torch.zeros(0, dtype=torch.long),
        prompts=len(np.unique(dataset.item_prompts()[order])),
        positions=torch.cat(positions) if positions else torch.zeros(0, dtype=torch.long),
        too_long=len(too_long),
    )


def read_positions(model, dataset, prompts: np.ndarray, positions: str, **kwargs) -> ReadStates:
    """``read_states`` of ``prompts`` at ``positions`` (``FIT_POSITIONS``): ``every`` headword subword,
    or ``headword`` only (``prompts`` then among ``headword_prompts``; with one mask at a time only
    that occurrence is read, a fifth of the cost)."""
    if positions not in FIT_POSITIONS:
        raise ValueError(f"positions {positions!r}: one of {', '.join(FIT_POSITIONS)}")
    if positions == "every":
        return read_states(model, dataset, prompts, **kwargs)
    items = None
    if dataset.predict and dataset.corruption == "bert":
        occ = dataset.occurrences
        first = np.r_[True, occ[1:, 0] != occ[:-1, 0]]  # each prompt's first occurrence: its first span's start
        items = np.nonzero(first & np.isin(occ[:, 0], prompts))[0]
    read = read_states(model, dataset, prompts, items=items, **kwargs)
    return read.subset(headword_rows(read, dataset))


def normal_equations(read: ReadStates, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """X^T X and X^T Y in float64, Y = ``embeddings[read.targets]`` built a chunk at a time."""
    x = read.states.double()
    xty = torch.zeros(x.size(1), embeddings.size(1), dtype=torch.float64)
    for start in range(0, len(x), CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        xty += x[rows].T @ embeddings[read.targets[rows]].double()
    return x.T @ x, xty


def ridge_solution(xtx: torch.Tensor, xty: torch.Tensor, lam: float) -> torch.Tensor:
    """W (h_e x h_s, float32) = ((X^T X + lam I)^{-1} X^T Y)^T."""
    eye = torch.eye(xtx.size(0), dtype=xtx.dtype)
    return torch.linalg.solve(xtx + lam * eye, xty).T.float()


def mimic_metrics(predicted: torch.Tensor, read: ReadStates, embeddings: torch.Tensor) -> dict[str, float]:
    """Eq. 5 as ``mimic_mse`` logs it: the per-definition mean squared L2 averaged over
    definitions, and the mean cosine over read positions."""
    from fairseq_defemb.criterions.mimic_mse import mimic_loss_terms

    target = embeddings[read.targets].float()
    _, rows = torch.unique(read.definitions, return_inverse=True)
    per_definition = mimic_loss_terms(predicted.float(), target, rows, int(rows.max()) + 1 if len(rows) else 0)
    cosine = F.cosine_similarity(predicted.float(), target, dim=-1)
    return {"loss": round(float(per_definition.mean()), 6), "cosine": round(float(cosine.mean()), 6)}


def fit_projection(model, task, *, samples: int | None = 10000, valid_samples: int | None = None,
                   lam: float | None = None, lambda_grid: tuple[float, ...] = LAMBDA_GRID, seed: int = 1,
                   max_tokens: int = 8192, batch_size: int | None = None, exclude_token_ids: set[int] | None = None,
                   valid_as_trained: bool = False, train_split: str = "train", valid_split: str = "valid",
                   positions: str = "headword", progress: bool = False) -> dict[str, Any]:
    """Fit W in closed form from the frozen ``model`` and set ``model.projection.weight``; return the report.

    ``samples`` training prompts (None: all) give X and Y; ``valid_samples`` validation prompts
    (None: all) choose lambda when ``lam`` is None and measure Eq. 5 for the mean target row, the
    model's W before the fit (random, for reference) and the fitted W. The validation is read
    as prediction reads it, or with ``valid_as_trained`` as fairseq-train's validation does (the
    task's fixed corruption, every prompt, every target), which is what the warm start's later
    valid losses compare with; lambda is then chosen on its ``positions`` rows.
    ``exclude_token_ids``: prompts defining these ids are left out of the fit (held-out tokens).
    ``positions`` (``FIT_POSITIONS``): the states fitted and validated on; ``headword`` samples
    only prompts whose headword is one subword and reads it alone (a W for whole tokens).
    """
    if task.corruption is None:
        raise ValueError("the task has no corruption yet: build the model with task.build_model first")
    embeddings = model.target_embeddings.detach().cpu()
    start = time.perf_counter()
    train = task.build_cloze_dataset(train_split, predict=True)
    headword = positions == "headword"
    fit_prompts = sample_prompts(train, samples, seed, exclude_token_ids, headword_only=headword)
    if len(fit_prompts) == 0:
        raise ValueError(f"{task.cfg.data}: no {train_split} prompt to fit W on"
                         + (" (none has a one-subword headword: use positions 'every')" if headword else ""))
    fit_read = read_positions(model, train, fit_prompts, positions, max_tokens=max_tokens, batch_size=batch_size,
                              progress=progress, desc=f"read {train_split}")
    valid = task.build_cloze_dataset(valid_split, predict=not valid_as_trained)
    valid_read = read_positions(model, valid, sample_prompts(valid, valid_samples, seed, exclude_token_ids,
                                                             headword_only=headword and not valid_as_trained),
                                "every" if valid_as_trained else positions, max_tokens=max_tokens,
                                batch_size=batch_size, progress=progress, desc=f"read {valid_split}")
    choose_on = valid_read.subset(headword_rows(valid_read, valid)) if valid_as_trained and headword else valid_read
    read_seconds = time.perf_counter() - start
    start = time.perf_counter()
    xtx, xty = normal_equations(fit_read, embeddings)
    grid: dict[str, float] = {}
    if lam is None:
        if len(choose_on.targets) == 0:
            raise ValueError(f"{task.cfg.data}: no {valid_split} prompt to choose lambda on; give it "
                             "(defemb-fit --lambda, definition_cloze --projection-init-lambda)")
        for candidate in lambda_grid:
            w = ridge_solution(xtx, xty, candidate)
            grid[repr(candidate)] = mimic_metrics(choose_on.states @ w.T, choose_on, embeddings)["loss"]
        lam = float(min(lambda_grid, key=lambda c: grid[repr(c)]))
    elif lam < 0:
        raise ValueError(f"lambda {lam}: must be >= 0")
    fitted = ridge_solution(xtx, xty, lam)
    solve_seconds = time.perf_counter() - start
    random_w = model.projection.weight.detach().float().cpu().clone()
    with torch.no_grad():
        model.projection.weight.copy_(fitted.to(model.projection.weight))
    mean_row = embeddings[fit_read.targets].double().mean(0).float()
    report = {
        "lambda": lam,
        "lambda_source": "valid" if grid else "given",
        "lambda_grid_valid_loss": grid,
        "corruption": task.corruption,
        "mask_headword_everywhere": bool(getattr(task.cfg, "mask_headword_everywhere", False)),
        "positions": positions,
        "seed": seed,
        "fit": {"split": train_split, "prompts": fit_read.prompts, "states": len(fit_read.targets),
                "excluded_token_ids": len(exclude_token_ids or ()), "too_long_for_the_model": fit_read.too_long,
                "fitted_W": mimic_metrics(fit_read.states @ fitted.T, fit_read, embeddings)},
        "valid": valid_report(valid_read, embeddings, valid_split, valid_as_trained, random_w, fitted, mean_row),
        "seconds": {"read": round(read_seconds, 2), "solve": round(solve_seconds, 2)},
        # the trivial baseline's vector (float32 values), so a warm start from this fit can score it
        "mean_target_row": mean_row.tolist(),
    }
    return report


def valid_report(read: ReadStates, embeddings: torch.Tensor, split: str, as_trained: bool, random_w: torch.Tensor,
                 w: torch.Tensor, mean_row: torch.Tensor | None) -> dict[str, Any]:
    """Eq. 5 on the validation states for the mean target row (when given), the random W and ``w``."""
    scores = {}
    if len(read.targets):
        if mean_row is not None:
            scores["mean_row"] = mimic_metrics(mean_row.expand(len(read.targets), -1), read, embeddings)
        scores["random_W"] = mimic_metrics(read.states @ random_w.T, read, embeddings)
        scores["fitted_W"] = mimic_metrics(read.states @ w.T, read, embeddings)
    return {"split": split, "read_as": "trained" if as_trained else "predicted", "prompts": read.prompts,
            "states": len(read.targets), **scores}


def load_projection(model, task, checkpoint: str | Path, *, valid_samples: int | None = None, seed: int = 1,
                    max_tokens: int = 8192, valid_split: str = "valid") -> dict[str, Any]:
    """Set ``model.projection.weight`` to the W of ``checkpoint`` (``defemb-fit``'s output, or any
    ``definition_cloze`` checkpoint of the same pretrained model: its frozen embedding rows must equal
    ``model``'s) and return a report shaped as ``fit_projection``'s ``valid`` part, read as
    fairseq-train's validation reads it: the random W, the loaded W (as ``fitted_W``) and, when
    ``checkpoint`` is a ``defemb-fit`` one, the mean target row of its fit. This is the warm start
    without reading the training prompts a second time."""
    if task.corruption is None:
        raise ValueError("the task has no corruption yet: build the model with task.build_model first")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"--projection-init-from {path}: not found (fit.pt written by defemb-fit, or a "
                                "definition_cloze checkpoint)")
    from fairseq_defemb import allow_fairseq_checkpoints

    allow_fairseq_checkpoints()

    state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    weights = state.get("model", {}) if isinstance(state, dict) else {}
    w, rows = weights.get("projection.weight"), weights.get("target_embeddings")
    if w is None or rows is None:
        raise ValueError(f"--projection-init-from {path}: no projection.weight / target_embeddings; not a "
                         "DefinitionEMB checkpoint (defemb-fit's fit.pt or fairseq-train --task definition_cloze)")
    embeddings = model.target_embeddings.detach().cpu()
    if tuple(w.shape) != tuple(model.projection.weight.shape) or not torch.equal(rows.float(), embeddings.float()):
        raise ValueError(f"--projection-init-from {path}: W {tuple(w.shape)} over {tuple(rows.shape)} embedding rows, "
                         f"but this model's is {tuple(model.projection.weight.shape)} over "
                         f"{tuple(embeddings.shape)}, or the rows differ: it was made from another pretrained "
                         "checkpoint or dictionary, or W reads another --projection-input (this model's: "
                         f"{model.projection_input}); fit it again with this --pretrained-checkpoint, corpus and "
                         "--projection-input")
    random_w = model.projection.weight.detach().float().cpu().clone()
    with torch.no_grad():
        model.projection.weight.copy_(w.to(model.projection.weight))
    fit = state.get("defemb_fit") or {}
    mean_row = fit.get("mean_target_row")
    valid = task.build_cloze_dataset(valid_split, predict=False)
    valid_read = read_states(model, valid, sample_prompts(valid, valid_samples, seed), max_tokens=max_tokens,
                             desc=f"read {valid_split}")
    return {"checkpoint": str(path), "fit": {k: v for k, v in fit.items() if k != "mean_target_row"},
            "valid": valid_report(valid_read, embeddings, valid_split, True, random_w, w.float(),
                                  None if mean_row is None else mean_row.float())}


def detect_family(pretrained_checkpoint: str | Path) -> str:
    """'roberta' or 'bart', from the parameter names of a stock fairseq checkpoint."""
    path = Path(pretrained_checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"--pretrained-checkpoint {path}: not found (the model.pt of a fairseq RoBERTa or BART)")
    from fairseq_defemb import allow_fairseq_checkpoints

    allow_fairseq_checkpoints()

    # mmap: only the names are needed, not the weights (bart.large is 400 MB)
    keys = torch.load(path, map_location="cpu", mmap=True, weights_only=False).get("model", {}).keys()
    if any(k.startswith("encoder.sentence_encoder.") for k in keys):
        return "roberta"
    if any(k.startswith("decoder.layers.") for k in keys):
        return "bart"
    raise ValueError(f"{path}: neither a fairseq RoBERTa (encoder.sentence_encoder.*) nor a BART (decoder.layers.*) "
                     "checkpoint")


def build_definition_model(*, pretrained_checkpoint: str | Path, corpus: str | Path,
                           mask_headword_everywhere: bool = False, skip_definition_only_copies: bool = False,
                           projection_input: str = "state", prediction_mean: str = "raw", seed: int = 1,
                           device: str = "cpu"):
    """The untrained DefinitionEMB model fairseq-train would build (``--task definition_cloze
    --arch defemb_roberta|defemb_bart`` from ``pretrained_checkpoint``), its rows not centred by
    default as a fitted W's are not (``defemb-fit --prediction-mean``); returns (model, task, cfg)."""
    from fairseq_defemb import register

    register()
    from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model

    family = detect_family(pretrained_checkpoint)
    # W is fitted by the caller: the task's own least-squares start would read the prompts twice
    extra = ["--criterion", "mimic_mse", "--pretrained-checkpoint", str(pretrained_checkpoint), "--seed", str(seed),
             "--projection-init", "random", "--projection-input", projection_input, "--prediction-mean", prediction_mean]
    if mask_headword_everywhere:
        extra.append("--mask-headword-everywhere")
    if skip_definition_only_copies:
        extra.append("--skip-definition-only-copies")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fairseq's own deprecation chatter while it converts its config
        torch.manual_seed(seed)  # the random W the report shows for reference
        task, model, cfg = build_pretraining_model(corpus, "definition_cloze", f"defemb_{family}", extra)
    return model.to(device), task, cfg


def fit_definition_model(*, pretrained_checkpoint: str | Path, corpus: str | Path, out: str | Path,
                         samples: int | None = 10000, valid_samples: int | None = None, lam: float | None = None,
                         mask_headword_everywhere: bool = False, skip_definition_only_copies: bool = False,
                         projection_input: str = "state+prompt-mean", prediction_mean: str = "raw", seed: int = 1,
                         max_tokens: int = 8192,
                         batch_size: int | None = None, exclude_token_ids: set[int] | None = None,
                         positions: str = "headword", device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """``defemb-fit``: the frozen PLM plus a fitted W, saved (atomically) as the fairseq checkpoint of a
    ``definition_cloze`` model, so ``defemb-predict --checkpoint out`` reads it like a trained one; the
    report (returned) is also written to ``out`` with the suffix ``.json``."""
    from fairseq_defemb.atomic_io import write_json
    from fairseq_defemb.convert.fairseq_checkpoint import save_model_checkpoint

    out = Path(out)
    if out.suffix == ".json" or out.resolve() == Path(pretrained_checkpoint).resolve():
        raise ValueError(f"--out {out}: must be a new checkpoint path (e.g. fit.pt), not the input nor a .json")
    model, task, cfg = build_definition_model(pretrained_checkpoint=pretrained_checkpoint, corpus=corpus,
                                              mask_headword_everywhere=mask_headword_everywhere,
                                              skip_definition_only_copies=skip_definition_only_copies,
                                              projection_input=projection_input, prediction_mean=prediction_mean,
                                              seed=seed, device=device)
    report = fit_projection(model, task, samples=samples, valid_samples=valid_samples, lam=lam, seed=seed,
                            max_tokens=max_tokens, batch_size=batch_size, exclude_token_ids=exclude_token_ids,
                            positions=positions, progress=progress)
    # The fit's own facts travel with its W, for a warm start from it (load_projection); the vector
    # stays out of the JSON report.
    save_model_checkpoint(model.cpu(), cfg, out, extra={"defemb_fit": {
        "mean_target_row": torch.tensor(report.pop("mean_target_row")), "lambda": report["lambda"],
        "prompts": report["fit"]["prompts"], "states": report["fit"]["states"], "seed": seed, "positions": positions,
        "projection_input": projection_input}})
    report.update(checkpoint=str(out), pretrained_checkpoint=str(pretrained_checkpoint), corpus=str(corpus),
                  arch=cfg.model.arch)
    try:
        write_json(out.with_suffix(".json"), report)
    except BaseException:  # the pair appears together or not at all
        out.unlink(missing_ok=True)
        raise
    return report
