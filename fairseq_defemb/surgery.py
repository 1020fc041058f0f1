"""``defemb-surgery``: replace rare-token embeddings in a copy of a fairseq checkpoint.

    defemb-surgery --checkpoint bart.large/model.pt --dict bart.large/dict.txt \\
        --embeddings defemb.pt --task-data cnn_dm-bin --alpha 100 --out bart.large.defemb/

writes OUT/model.pt + OUT/dict.txt + OUT/surgery.json; stock fairseq fine-tunes and
generates from OUT exactly as from the original. Every tied copy of the embedding matrix
is updated, everything else is carried over untouched, the input is never modified and
the output appears atomically. ``--method deldirection|del-zscore`` applies the paper's
baselines to the whole matrix instead. ``--verify OUT --against ORIGINAL`` proves that
only the rows listed in OUT/surgery.json changed.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.checkpoint_embeddings import embedding_keys, load_checkpoint
from fairseq_defemb.embedding_file import PredictedEmbeddings
from fairseq_defemb.frequency_groups import frequency_groups
from fairseq_defemb.isotropy import isotropy_by_group
from fairseq_defemb.postprocessing import del_direction, del_zscore
from fairseq_defemb.selection import Selection, select_rows, task_token_ids
from fairseq_defemb.vocabulary import dictionary_sha256, load_model_dictionary

METHODS = ("definitionemb", "deldirection", "del-zscore")
REPORT = "surgery.json"


class SurgeryError(ValueError):
    """Inputs that do not fit together; the message names the files and the fix."""


def tied_matrix(state: dict, source: str) -> tuple[list[str], torch.Tensor]:
    try:
        keys = embedding_keys(state["model"])
    except KeyError as err:
        raise SurgeryError(f"{source}: {err.args[0]}") from None
    matrix = state["model"][keys[0]]
    for key in keys[1:]:
        if not torch.equal(state["model"][key], matrix):
            raise SurgeryError(f"{source}: {key} differs from {keys[0]}; surgery needs tied embeddings")
    return keys, matrix


def check_inputs(args, matrix: torch.Tensor, dictionary, predicted: PredictedEmbeddings | None) -> None:
    rows, dim = matrix.shape
    if rows != len(dictionary):
        raise SurgeryError(f"{args.checkpoint} has {rows} embedding rows but {args.dict} gives {len(dictionary)} "
                           "symbols (dict.txt + specials + <mask>): pass the dict.txt that ships with this checkpoint")
    beside = Path(args.checkpoint).parent / "dict.txt"
    if beside.is_file() and dictionary_sha256(beside) != dictionary_sha256(args.dict):
        raise SurgeryError(f"{args.dict} differs from {beside}, the checkpoint's own dictionary")
    if predicted is None:
        return
    if predicted.embedding_dim != dim:
        raise SurgeryError(f"{args.embeddings} holds {predicted.embedding_dim}-dimensional vectors but "
                           f"{args.checkpoint} embeds in {dim}: predict with a DefinitionEMB model trained from this checkpoint")
    if predicted.dictionary_size != rows or predicted.dictionary_sha256 != dictionary_sha256(args.dict):
        raise SurgeryError(f"{args.embeddings} was predicted for another dictionary than {args.dict} "
                           f"({predicted.dictionary_size} rows, hash {predicted.dictionary_sha256[:12]}...)")


def plan(args, matrix: torch.Tensor, dictionary) -> tuple[list[int], torch.Tensor, Selection | None]:
    """The rows to change and their new values."""
    if args.method != "definitionemb":
        transform = del_direction if args.method == "deldirection" else del_zscore
        return list(range(matrix.size(0))), transform(matrix.float()), None
    predicted = PredictedEmbeddings.load(args.embeddings)
    check_inputs(args, matrix, dictionary, predicted)
    task_ids = task_token_ids(args.task_data, dictionary, args.dict, args.gpt2_encoder_json, args.gpt2_vocab_bpe)
    by_id = {int(t): row for row, t in enumerate(predicted.token_ids.tolist())}
    selection = select_rows(dictionary, task_ids, set(by_id), args.alpha)
    rows = torch.tensor([by_id[i] for i in selection.replaced], dtype=torch.long)
    return selection.replaced, predicted.embeddings[rows] if len(rows) else torch.zeros(0, matrix.size(1)), selection


def change_report(before: torch.Tensor, after: torch.Tensor, changed: list[int], dictionary) -> dict:
    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))
    changed_set = np.asarray(changed, dtype=np.int64)
    per_group = {}
    for name, ids in groups.items():
        ids = ids[np.isin(ids, changed_set)]
        if len(ids) == 0:
            per_group[name] = {"changed": 0}
            continue
        b, a = before[ids].float(), after[ids].float()
        per_group[name] = {
            "changed": int(len(ids)),
            "norm_before": round(b.norm(dim=1).mean().item(), 4),
            "norm_after": round(a.norm(dim=1).mean().item(), 4),
            "cosine_to_original": round(torch.nn.functional.cosine_similarity(a, b, dim=1).mean().item(), 4),
        }
    return {
        "per_group": per_group,
        "isotropy_before": isotropy_by_group(before, groups),
        "isotropy_after": isotropy_by_group(after, groups),
    }


def run_surgery(args) -> dict:
    if args.method == "definitionemb" and not (args.embeddings and args.task_data):
        raise SurgeryError("--method definitionemb needs --embeddings (defemb-predict output) and --task-data")
    if not 0 <= args.alpha <= 100:
        raise SurgeryError(f"--alpha {args.alpha}: must be a percentage in [0, 100] (paper: CNNDM 100, XSum 10, RTE 3)")
    if not args.dry_run and Path(args.out).exists() and not args.overwrite:
        raise SurgeryError(f"--out {args.out}: exists; pick a new directory or pass --overwrite")
    start = time.perf_counter()
    dictionary = load_model_dictionary(args.dict)
    state = load_checkpoint(args.checkpoint)
    keys, matrix = tied_matrix(state, args.checkpoint)
    check_inputs(args, matrix, dictionary, None)
    changed, values, selection = plan(args, matrix, dictionary)
    before = matrix.detach().clone().float()
    after = before.clone()
    index = torch.tensor(changed, dtype=torch.long)
    after[index] = values.float()
    report = {
        "checkpoint": str(args.checkpoint), "dict": str(args.dict), "method": args.method, "alpha": args.alpha,
        "embedding_keys": keys, "changed_ids": changed,
        "changed_tokens": [dictionary[i] for i in changed[:2000]],
        "num_changed": len(changed),
    }
    if selection is not None:
        report.update(budget=selection.budget, task_vocabulary=selection.task_vocabulary,
                      requested=len(selection.requested), requested_without_definition=len(selection.without_definition),
                      without_definition_ids=selection.without_definition[:2000])
    report.update(change_report(before, after, changed, dictionary))
    if args.dry_run:
        report["seconds"] = round(time.perf_counter() - start, 2)
        return report
    new_rows = after[index].to(matrix.dtype)
    for key in keys:  # tied copies may or may not share storage: write every one
        state["model"][key][index] = new_rows
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        torch.save(state, tmp / "model.pt")
        shutil.copyfile(args.dict, tmp / "dict.txt")
        report["seconds"] = round(time.perf_counter() - start, 2)
        (tmp / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def verify(out: str | Path, against: str | Path) -> tuple[bool, list[str]]:
    """Only the rows listed in OUT/surgery.json changed; tied copies equal; all else bitwise equal."""
    out = Path(out)
    report = json.loads((out / REPORT).read_text())
    changed = torch.tensor(report["changed_ids"], dtype=torch.long)
    new, old = load_checkpoint(out), load_checkpoint(against)
    problems = []
    keys = report["embedding_keys"]
    if set(new["model"]) != set(old["model"]):
        problems.append(f"state dict keys differ: {sorted(set(new['model']) ^ set(old['model']))[:5]}")
    for key in set(new["model"]) & set(old["model"]):
        a, b = new["model"][key], old["model"][key]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{key}: dtype/shape changed")
        elif key in keys:
            keep = torch.ones(a.size(0), dtype=torch.bool)
            keep[changed] = False
            if not torch.equal(a[keep], b[keep]):
                problems.append(f"{key}: rows outside the {len(changed)} listed ones changed")
            if not torch.equal(a, new["model"][keys[0]]):
                problems.append(f"{key}: no longer equal to its tied copy {keys[0]}")
        elif not torch.equal(a, b):
            problems.append(f"{key}: changed")
    for field in set(new) | set(old):
        if field != "model" and repr(new.get(field)) != repr(old.get(field)):
            problems.append(f"checkpoint field '{field}' changed")
    return not problems, problems


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defemb-surgery", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="pretrained fairseq checkpoint (model.pt)")
    p.add_argument("--dict", help="its dict.txt")
    p.add_argument("--embeddings", help="defemb-predict output (--method definitionemb)")
    p.add_argument("--task-data", help="fairseq-preprocess directory of the downstream task, or raw text file(s)")
    p.add_argument("--gpt2-encoder-json", help="GPT-2 encoder.json, to tokenize raw-text --task-data")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 vocab.bpe, to tokenize raw-text --task-data")
    p.add_argument("--alpha", type=float, default=100.0,
                   help="replace the rarest alpha%% of the vocabulary among the task's tokens (paper: CNNDM 100, "
                   "Y-BIGPATENT 30, XSum 10, BillSum 7, MRPC 5, RTE 3)")
    p.add_argument("--method", choices=METHODS, default="definitionemb", help="DefinitionEMB or a baseline on the whole matrix")
    p.add_argument("--out", help="output checkpoint directory (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--verify", metavar="OUT", help="check a surgery output against --against")
    p.add_argument("--against", metavar="ORIGINAL", help="the original checkpoint (directory or model.pt) for --verify")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verify:
        if not args.against:
            parser.error("--verify OUT needs --against ORIGINAL")
        ok, problems = verify(args.verify, args.against)
        print("verified: only the listed rows changed, tied copies equal, everything else bitwise equal" if ok
              else "verification FAILED:\n  " + "\n  ".join(problems))
        return 0 if ok else 1
    for flag in ("checkpoint", "dict"):
        if not getattr(args, flag):
            parser.error(f"--{flag} is required")
    if not args.out and not args.dry_run:
        parser.error("--out is required (or --dry-run)")
    try:
        report = run_surgery(args)
    except (SurgeryError, FileNotFoundError, ValueError) as err:
        print(f"defemb-surgery: error: {err}", file=sys.stderr)
        return 2
    iso_b, iso_a = report["isotropy_before"], report["isotropy_after"]
    print(json.dumps({k: report[k] for k in report if k not in ("changed_ids", "changed_tokens", "without_definition_ids")}))
    lines = [f"{args.method}: {report['num_changed']} rows {'would change' if args.dry_run else 'changed'}"]
    if "budget" in report:
        lines.append(f"  budget min(alpha% |V|, |V_task|) = {report['budget']} of {report['task_vocabulary']} task tokens; "
                     f"{report['requested_without_definition']} requested rows had no definition")
    lines.append("  isotropy " + ", ".join(f"{g} {iso_b[g]:.3f} -> {iso_a[g]:.3f}" for g in iso_b))
    if not args.dry_run:
        lines.append(f"  -> {args.out} ({report['seconds']} s)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
