"""Replace rare-token embeddings in a copy of a fairseq checkpoint (the library behind ``defemb-surgery``).

:func:`swap_embeddings` writes OUT/model.pt + OUT/dict.txt + OUT/surgery.json: every tied copy of
the embedding matrix updated, everything else carried over untouched (dtype kept; OUT/model.pt is
the input file byte for byte outside the embedding's zip records), the input never modified, the
output atomic. :func:`verify` proves that only the rows listed in surgery.json changed.
``method`` "deldirection" (Eq. 3), "deldirection-centred" or "del-zscore" applies the paper's
baselines (``BASELINES``) to the whole matrix instead.
Predictions are checked before anything is written (:func:`sanity_check`): rows whose norms or
directions do not belong to the checkpoint's embedding space stop surgery unless ``force``.
"""
import argparse
import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.surgery.checkpoint import load_checkpoint, tied_embedding, with_rows, write_checkpoint
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.analysis.frequency_groups import frequency_groups, groups_convention
from fairseq_defemb.analysis.isotropy import CONVENTIONS, changed_group_grams, isotropy_from_grams, rows_of
from fairseq_defemb.surgery.postprocessing import del_direction, del_direction_centred, del_zscore
from fairseq_defemb.surgery.selection import (Selection, TaskTokens, check_task_splits, select_rows, special_ids,
                                     task_token_ids)
from fairseq_defemb.data.vocabulary import MASK_SYMBOL, dictionary_sha256, load_model_dictionary
from fairseq_defemb.options import SURGERY_METHODS

# deldirection is the paper's Eq. 3 (uncentred projections); deldirection-centred projects the centred
# vectors; del-zscore builds on Eq. 3 (fairseq_defemb/surgery/postprocessing.py)
BASELINES = {"deldirection": del_direction, "deldirection-centred": del_direction_centred, "del-zscore": del_zscore}
METHODS = SURGERY_METHODS
assert METHODS[1:] == tuple(BASELINES), "fairseq_defemb.options.SURGERY_METHODS names the baselines"
REPORT = "surgery.json"


class SurgeryError(ValueError):
    """Inputs that do not fit together; the message names the files and the fix."""


def checkpoint_file(path: str | Path) -> Path:
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def load_state(path: str | Path) -> dict:
    """load_checkpoint, with unreadable files turned into an error naming the file."""
    try:
        return load_checkpoint(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # pickle errors, truncated zip archives, ...
        raise SurgeryError(f"{checkpoint_file(path)}: cannot be read as a torch checkpoint ({type(err).__name__}: "
                           f"{err}); pass the model.pt of a fairseq BART/RoBERTa checkpoint") from None


def rows_sha256(matrix: torch.Tensor, ids: torch.Tensor) -> str:
    """Hash of the given rows as stored (checkpoint dtype), in the given order."""
    rows = rows_of(matrix, ids).contiguous()
    return hashlib.sha256(rows.view(torch.uint8).numpy() if rows.numel() else b"").hexdigest()


def check_inputs(checkpoint: str | Path, dict_path: str | Path, matrix: torch.Tensor, dictionary,
                 predicted: PredictedEmbeddings | None = None, embeddings: str | Path | None = None) -> None:
    """The checkpoint, its dictionary and (if given) the predictions describe the same vocabulary and dimension."""
    rows, dim = matrix.shape
    if rows != len(dictionary):
        raise SurgeryError(f"{checkpoint} has {rows} embedding rows but {dict_path} gives {len(dictionary)} "
                           "symbols (4 specials + dict.txt + <mask>): pass the dict.txt that ships with this checkpoint")
    beside = checkpoint_file(checkpoint).parent / "dict.txt"
    if beside.is_file() and dictionary_sha256(beside) != dictionary_sha256(dict_path):
        raise SurgeryError(f"{dict_path} differs from {beside}, the checkpoint's own dictionary: "
                           f"pass --dict {beside}")
    if predicted is None:
        return
    if predicted.embedding_dim != dim:
        raise SurgeryError(f"{embeddings} holds {predicted.embedding_dim}-dimensional vectors but "
                           f"{checkpoint} embeds in {dim}: predict with a DefinitionEMB model trained from this checkpoint")
    if predicted.dictionary_size != rows or predicted.dictionary_sha256 != dictionary_sha256(dict_path):
        raise SurgeryError(f"{embeddings} was predicted for another dictionary than {dict_path} "
                           f"({predicted.dictionary_size} rows vs {rows}, hash {predicted.dictionary_sha256[:12]}... vs "
                           f"{dictionary_sha256(dict_path)[:12]}...): rerun defemb-predict with this model's dict.txt")
    ids = predicted.token_ids
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= rows):
        raise SurgeryError(f"{embeddings}: token ids outside 0..{rows - 1}; regenerate it with defemb-predict")


def plan(matrix: torch.Tensor, dictionary, *, checkpoint: str | Path, dict_path: str | Path, method: str,
         embeddings: str | Path | None, task_data: list[str | Path], alpha: float,
         gpt2_encoder_json: str | Path | None = None, gpt2_vocab_bpe: str | Path | None = None,
         task_splits: tuple[str, ...] = ("train",),
         ) -> tuple[list[int], torch.Tensor, Selection | None, TaskTokens | None]:
    """The rows to change (ascending ids), their new values (float32, same order), and for
    definitionemb the selection and what of the task data was read."""
    if method != "definitionemb":
        return list(range(matrix.size(0))), BASELINES[method](matrix.float()), None, None
    predicted = PredictedEmbeddings.load(embeddings)
    check_inputs(checkpoint, dict_path, matrix, dictionary, predicted, embeddings)
    task = task_token_ids(task_data, dictionary, dict_path, gpt2_encoder_json, gpt2_vocab_bpe, task_splits=task_splits)
    by_id = {int(t): row for row, t in enumerate(predicted.token_ids.tolist())}
    selection = select_rows(dictionary, task.ids, set(by_id), alpha)
    rows = torch.tensor([by_id[i] for i in selection.replaced], dtype=torch.long)
    values = predicted.embeddings[rows].float() if len(rows) else torch.zeros(0, matrix.size(1))
    return selection.replaced, values, selection, task


# The sanity guard. Predictions from a wrong or untrained model are the failure it
# catches: measured on the demo's MiniLM (examples/demo.py --budget ci, 12 updates) the replacement
# rows had 0.157x the norm of the rows they replace, and 50x-norm rows were reported accepted
# silently. A trained model mimics the pretrained rows (Eq. 5), so their scale is the rows' scale.
NORM_RATIO_BOUNDS = (1 / 3, 3.0)
# Direction: the new rows must be closer to the rows they replace than randomly drawn rows of the
# original matrix are (the chance level, which is ~0 in an isotropic space and higher in an
# anisotropic one), by COSINE_Z standard errors of the paired per-row difference. Random vectors
# or another model's space sit at the chance level (z ~ 0); a mean cosine threshold could not
# tell them apart from an undertrained model's 0.1. Fewer than COSINE_MIN_ROWS rows are not judged.
COSINE_Z = 3.0
COSINE_MIN_ROWS = 10
CHANCE_DRAWS = 8  # random original rows per replaced row for the chance level (seeded)
COSINE_SAMPLE = 2048


def sanity_check(matrix: torch.Tensor, changed: list[int], values: torch.Tensor, excluded: list[int]) -> dict:
    """Figures of the replacement rows against the rows they replace, and the guard's verdict.

    Returns ``norm_before``/``norm_after`` (mean L2 norms), ``norm_ratio`` (their ratio),
    ``cosine_to_replaced`` (mean cosine of each new row to the row it replaces),
    ``cosine_chance`` (mean cosine of the replaced rows to randomly drawn rows of the original
    matrix, ``excluded`` ids never drawn), ``cosine_z`` (the paired difference in standard errors)
    and ``problems`` (human-readable; empty when the rows pass). The cosine figures use a seeded
    sample of at most COSINE_SAMPLE rows (plenty for the test, and cheap at BART-large's 50k)."""
    figures = {"rows": len(changed), "norm_ratio_bounds": [round(b, 4) for b in NORM_RATIO_BOUNDS],
               "cosine_z_min": COSINE_Z, "cosine_min_rows": COSINE_MIN_ROWS, "problems": []}
    if not changed:
        return figures
    ids = torch.tensor(changed, dtype=torch.long)
    norm_before = float(torch.linalg.vector_norm(rows_of(matrix, ids).float(), dim=1).double().mean())
    norm_after = float(torch.linalg.vector_norm(values.float(), dim=1).double().mean())
    ratio = norm_after / max(norm_before, 1e-12)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randperm(len(ids), generator=generator)[:COSINE_SAMPLE].sort().values
    pool = torch.tensor(sorted(set(range(matrix.size(0))) - set(excluded)), dtype=torch.long)
    draws = pool[torch.randint(len(pool), (len(sample), CHANCE_DRAWS), generator=generator)]
    unit = torch.nn.functional.normalize
    old = unit(matrix[ids[sample]].float(), dim=1)
    cos_new = (unit(values[sample].float(), dim=1) * old).sum(1).double()
    chance_rows = matrix[draws].float()  # float32: the gather is the cost (0.3 s at 2,048 x 8 x 1024)
    cos_chance = (torch.einsum("nkd,nd->nk", chance_rows, old)
                  / torch.linalg.vector_norm(chance_rows, dim=2).clamp(min=1e-12)).double().mean(1)
    diff = cos_new - cos_chance
    spread = float(diff.std()) if len(diff) > 1 else 0.0
    z = float(diff.mean()) / (spread / len(diff) ** 0.5) if spread > 0 else None
    figures.update(norm_before=round(norm_before, 4), norm_after=round(norm_after, 4), norm_ratio=round(ratio, 4),
                   cosine_rows=len(sample), cosine_to_replaced=round(float(cos_new.mean()), 4),
                   cosine_chance=round(float(cos_chance.mean()), 4), cosine_z=None if z is None else round(z, 2))
    low, high = NORM_RATIO_BOUNDS
    if not low <= ratio <= high:
        figures["problems"].append(
            f"mean norm {norm_after:.4g} against {norm_before:.4g} for the rows they replace: ratio {ratio:.3g}, "
            f"outside [{low:.3g}, {high:.3g}]")
    if len(changed) >= COSINE_MIN_ROWS and (z is None or z < COSINE_Z):
        figures["problems"].append(
            f"mean cosine to the rows they replace {float(cos_new.mean()):.3f}, chance level (random rows of the "
            f"original matrix) {float(cos_chance.mean()):.3f}: {'n/a' if z is None else f'{z:.2f}'} standard errors "
            f"above chance, {COSINE_Z:g} needed")
    return figures


def row_changes(before: torch.Tensor, after: torch.Tensor, chunk_rows: int = 4096) -> torch.Tensor:
    """Per row: norm before, norm after, cosine between them (float64, rows x 3), in row chunks that
    stay in cache (torch's cosine_similarity makes several full-size temporaries)."""
    stats = torch.zeros(before.size(0), 3, dtype=torch.float64)
    for start in range(0, before.size(0), chunk_rows):
        b, a = before[start:start + chunk_rows].float(), after[start:start + chunk_rows].float()
        norm_b, norm_a = torch.linalg.vector_norm(b, dim=1), torch.linalg.vector_norm(a, dim=1)
        cosine = (a * b).sum(1) / (norm_b.clamp(min=1e-8) * norm_a.clamp(min=1e-8))
        stats[start:start + chunk_rows] = torch.stack([norm_b, norm_a, cosine], 1)
    return stats


def change_report(before: torch.Tensor, after: torch.Tensor, changed: list[int], dictionary, isotropy: bool = True) -> dict:
    """Norm and cosine change of the changed rows per frequency group; isotropy of E (non-special rows)
    before and after, overall and per group: ``isotropy`` = {"before": {"paper": {group: I},
    "sign_invariant": {...}, "max_abs_projection": {...}}, "after": {...}, "conventions": signatures,
    "clipping": note}, or None. A group none of whose rows changed keeps its values without recomputation, and
    a Gram chunk with no changed row is computed once for both matrices (``changed_group_grams``)."""
    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index(MASK_SYMBOL))
    changed_set = np.asarray(changed, dtype=np.int64)
    stats = row_changes(rows_of(before, changed_set), rows_of(after, changed_set))
    per_group = {}
    for name, ids in groups.items():
        mine = torch.as_tensor(np.isin(changed_set, ids))
        if not bool(mine.any()):
            per_group[name] = {"changed": 0}
            continue
        norm_before, norm_after, cosine = stats[mine].mean(0).tolist()
        per_group[name] = {"changed": int(mine.sum()), "norm_before": round(norm_before, 4),
                           "norm_after": round(norm_after, 4), "cosine_to_original": round(cosine, 4)}
    if not isotropy:
        return {"per_group": per_group, "isotropy": None}
    described = groups_convention(dictionary.nspecial)
    before, after = before.float(), after.float()
    touched = {name: ids for name, ids in groups.items() if per_group[name]["changed"]}
    grams_before, grams_after = changed_group_grams(before, after, changed_set, groups, touched)
    iso_before = isotropy_from_grams(before, groups, grams_before, described)
    figures = ("max_abs_projection", *CONVENTIONS)
    iso_after = {key: dict(iso_before[key]) for key in figures}
    if touched:
        recomputed = isotropy_from_grams(after, touched, grams_after, described)
        for key in figures:
            iso_after[key].update(recomputed[key])
    return {"per_group": per_group, "isotropy": {
        "before": {key: iso_before[key] for key in figures}, "after": iso_after,
        "conventions": iso_before["conventions"], "clipping": iso_before["clipping"]}}


class _Writer(threading.Thread):
    """Writes the output checkpoint in the background while the report's products run: the copy is
    mostly kernel time on one core (0.4-2 s here), and overlapping it measured 0.3-0.9 s faster than
    writing first, though each slows the other."""

    def __init__(self, *args):
        super().__init__(daemon=True)
        self.args, self.error = args, None

    def run(self) -> None:
        try:
            write_checkpoint(*self.args)
        except BaseException as err:  # re-raised in the main thread
            self.error = err


def swap_embeddings(checkpoint: str | Path, out: str | Path | None = None, *, dict_path: str | Path | None = None,
                    embeddings: str | Path | None = None, task_data: list[str | Path] | str | Path = (),
                    alpha: float = 100.0, method: str = "definitionemb",
                    gpt2_encoder_json: str | Path | None = None, gpt2_vocab_bpe: str | Path | None = None,
                    task_splits: tuple[str, ...] | list[str] | str = ("train",), force: bool = False,
                    overwrite: bool = False, dry_run: bool = False, isotropy: bool = True) -> dict:
    """Write a copy of ``checkpoint`` with rare rows replaced (or the whole matrix post-processed) to ``out``.

    ``method="definitionemb"`` replaces the last ``min(alpha% |V|, |V_task|)`` task tokens that have a
    prediction in ``embeddings``; ``"deldirection"``/``"del-zscore"`` transform every row. ``dict_path``
    defaults to the dict.txt beside the checkpoint. ``task_splits``: the splits of a fairseq-preprocess
    ``task_data`` directory that make V_task (default the fine-tuning split ``train``; ``"all"`` every
    one, test references included); raw text files are read as given. Returns the report also written to OUT/surgery.json;
    with ``dry_run`` nothing is written and ``out`` may be None. For definitionemb, replacement rows that fail
    :func:`sanity_check` raise :class:`SurgeryError` (showing the figures) unless ``force``; the report's
    ``sanity`` records the figures either way.
    """
    if method not in METHODS:
        raise SurgeryError(f"method {method!r}: pick one of {', '.join(METHODS)}")
    if dict_path is None:
        dict_path = checkpoint_file(checkpoint).parent / "dict.txt"
    task_data = [task_data] if isinstance(task_data, (str, Path)) else list(task_data)
    if out is None and not dry_run:
        raise SurgeryError("an output directory is required unless dry_run (--out / --dry-run)")
    if method == "definitionemb" and not (embeddings and task_data):
        raise SurgeryError("--method definitionemb needs --embeddings (defemb-predict output) and --task-data "
                           "(the downstream task's fairseq-preprocess directory or raw text)")
    try:
        task_splits = check_task_splits(task_splits)
    except ValueError as err:
        raise SurgeryError(str(err)) from None
    if not 0 <= alpha <= 100:
        raise SurgeryError(f"--alpha {alpha:g}: must be a percentage in [0, 100] "
                           "(paper: CNNDM 100, Y-BIGPATENT 30, XSum 10, BillSum 7, MRPC 5, RTE 3)")
    if not dry_run and Path(out).exists() and not overwrite:
        raise SurgeryError(f"--out {out}: exists; pick a new directory or pass --overwrite")
    if not dry_run and checkpoint_file(out).resolve() == checkpoint_file(checkpoint).resolve():
        raise SurgeryError(f"--out {out} is the input checkpoint's directory; write the surgered copy elsewhere")
    start = time.perf_counter()
    if not checkpoint_file(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint_file(checkpoint)}: checkpoint not found (a fairseq model.pt)")
    dictionary = load_model_dictionary(dict_path)
    state = load_state(checkpoint)
    try:
        keys, matrix = tied_embedding(state["model"], checkpoint_file(checkpoint))
    except ValueError as err:
        raise SurgeryError(str(err)) from None
    check_inputs(checkpoint, dict_path, matrix, dictionary)
    changed, values, selection, task = plan(
        matrix, dictionary, checkpoint=checkpoint, dict_path=dict_path, method=method, embeddings=embeddings,
        task_data=task_data, alpha=alpha, gpt2_encoder_json=gpt2_encoder_json, gpt2_vocab_bpe=gpt2_vocab_bpe,
        task_splits=task_splits)
    specials = sorted(special_ids(dictionary))
    if method == "definitionemb":  # the baselines transform the matrix itself: nothing foreign to check
        sanity = sanity_check(matrix, changed, values, specials)
        sanity["forced"] = bool(force and sanity["problems"])
        if sanity["problems"] and not force:
            raise SurgeryError(
                f"{embeddings}: the {len(changed)} replacement rows do not look like rows of {checkpoint_file(checkpoint)} "
                "(a wrong or undertrained DefinitionEMB model?):\n  " + "\n  ".join(sanity["problems"])
                + "\nrecheck the predictions, or pass --force (force=True) to write them anyway; "
                "the figures are recorded in surgery.json's 'sanity'")
    index = torch.tensor(changed, dtype=torch.long)
    after = with_rows(matrix, index, values)
    report = {
        "checkpoint": str(checkpoint_file(checkpoint)), "checkpoint_bytes": checkpoint_file(checkpoint).stat().st_size,
        "dict": str(dict_path), "dict_sha256": dictionary_sha256(dict_path), "method": method,
        "dtype": str(matrix.dtype).replace("torch.", ""), "embedding_keys": keys,
        "rows": "selected" if selection is not None else "all (specials, <mask> and madeupword fillers included)",
        "num_changed": len(changed), "changed_ids": changed, "changed_tokens": [dictionary[i] for i in changed],
        "changed_rows_sha256": rows_sha256(after, index),
    }
    if selection is not None:
        report.update(
            alpha=alpha, embeddings=str(embeddings),
            task_data=[str(p) for p in task_data], task_splits=list(task.splits), task_files=task.files,
            vocabulary=selection.vocabulary,
            task_vocabulary=selection.task_vocabulary, budget=selection.budget, requested=len(selection.requested),
            requested_without_definition=len(selection.without_definition),
            without_definition_ids=selection.without_definition,
            without_definition_tokens=[dictionary[i] for i in selection.without_definition],
        )
    report["special_ids"] = specials
    if method == "definitionemb":
        report["sanity"] = sanity
    if dry_run:
        report.update(change_report(matrix, after, changed, dictionary, isotropy))
        report["seconds"] = round(time.perf_counter() - start, 2)
        return report
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        writer = _Writer(checkpoint_file(checkpoint), tmp / "model.pt", state, keys, after)
        writer.start()
        try:
            report.update(change_report(matrix, after, changed, dictionary, isotropy))
        finally:
            writer.join()
        if writer.error is not None:
            raise writer.error
        shutil.copyfile(dict_path, tmp / "dict.txt")
        report["seconds"] = round(time.perf_counter() - start, 2)
        (tmp / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    return report


def _same(a, b) -> bool:
    """Deep equality of checkpoint fields: tensors bitwise, containers recursively."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, argparse.Namespace) and isinstance(b, argparse.Namespace):
        return _same(vars(a), vars(b))
    try:
        return bool(a == b) or repr(a) == repr(b)
    except Exception:
        return repr(a) == repr(b)


def verify(out: str | Path, against: str | Path) -> tuple[bool, list[str]]:
    """Only the rows listed in OUT/surgery.json changed (and hold the values it records);
    tied copies equal; all other tensors and checkpoint fields bitwise equal; dtype kept."""
    out = Path(out)
    if not (out / REPORT).is_file():
        return False, [f"{out / REPORT}: not found; --verify takes a directory written by defemb-surgery"]
    try:
        report = json.loads((out / REPORT).read_text())
        changed = torch.tensor(report["changed_ids"], dtype=torch.long)
        keys = report["embedding_keys"]
    except (ValueError, KeyError) as err:
        return False, [f"{out / REPORT}: unreadable report ({err})"]
    try:
        new, old = load_state(out), load_state(against)
    except (FileNotFoundError, ValueError) as err:
        return False, [str(err)]
    problems = []
    if report.get("checkpoint_bytes") not in (None, checkpoint_file(against).stat().st_size):
        problems.append(f"{checkpoint_file(against)} is not the file surgery read ({report['checkpoint_bytes']} bytes)")
    if set(new["model"]) != set(old["model"]):
        problems.append(f"state dict keys differ: {sorted(set(new['model']) ^ set(old['model']))[:5]}")
    missing = [k for k in keys if k not in new["model"]]
    if missing:
        problems.append(f"embedding keys listed in {REPORT} missing from the output: {missing}")
    keep = None
    for key in sorted(set(new["model"]) & set(old["model"])):
        a, b = new["model"][key], old["model"][key]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{key}: dtype/shape changed ({b.dtype} {tuple(b.shape)} -> {a.dtype} {tuple(a.shape)})")
        elif key in keys:
            if keep is None:
                keep = torch.ones(a.size(0), dtype=torch.bool)
                keep[changed] = False
            if not torch.equal(a[keep], b[keep]):
                bad = torch.nonzero(~(a[keep] == b[keep]).all(dim=1)).flatten()
                problems.append(f"{key}: {len(bad)} rows outside the {len(changed)} listed ones changed, e.g. id "
                                f"{int(torch.nonzero(keep).flatten()[bad[0]])}")
            if not torch.equal(a, new["model"][keys[0]]):
                problems.append(f"{key}: no longer equal to its tied copy {keys[0]}")
        elif not torch.equal(a, b):
            problems.append(f"{key}: changed")
    if keys and keys[0] in new["model"] and "changed_rows_sha256" in report:
        if rows_sha256(new["model"][keys[0]], changed) != report["changed_rows_sha256"]:
            problems.append(f"the {len(changed)} listed rows do not hold the values surgery wrote (hash mismatch)")
    for field in sorted(set(new) | set(old)):
        if field != "model" and not _same(new.get(field), old.get(field)):
            problems.append(f"checkpoint field '{field}' changed")
    old_dict = checkpoint_file(against).parent / "dict.txt"
    if old_dict.is_file() and (out / "dict.txt").is_file() and dictionary_sha256(old_dict) != dictionary_sha256(out / "dict.txt"):
        problems.append(f"{out / 'dict.txt'} differs from {old_dict}")
    return not problems, problems
