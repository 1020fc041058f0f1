"""``defemb-surgery``: the command over :func:`fairseq_defemb.surgery.swap.swap_embeddings`.

    defemb-surgery --checkpoint bart.large/model.pt --dict bart.large/dict.txt \\
        --embeddings defemb.pt --task-data cnn_dm-bin --alpha 100 --out bart.large.defemb/

writes OUT/model.pt + OUT/dict.txt + OUT/surgery.json; stock fairseq fine-tunes and
generates from OUT exactly as from the original. Every tied copy of the embedding matrix
is updated, everything else is carried over untouched (dtype kept; OUT/model.pt is the input file
byte for byte outside the embedding's zip records), the input is never modified and the output
appears atomically. ``--method deldirection|deldirection-centred|del-zscore`` applies
the paper's baselines to the whole matrix instead (no --embeddings/--task-data needed).
``--verify OUT --against ORIGINAL`` proves that only the rows listed in OUT/surgery.json
changed; ``--dry-run`` prints what would change and writes nothing.
"""
import argparse
import sys

from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.options import SURGERY_METHODS

DESCRIPTION = __doc__.split("\n", 1)[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defemb-surgery", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="pretrained fairseq BART/RoBERTa checkpoint (model.pt or its directory)")
    p.add_argument("--dict", help="its dict.txt (default: the dict.txt beside --checkpoint)")
    p.add_argument("--embeddings", help="defemb-predict output (--method definitionemb)")
    p.add_argument("--task-data", nargs="+", metavar="PATH",
                   help="the downstream task's fairseq-preprocess director(y/ies) (e.g. cnn_dm-bin, or RTE-bin/input0 "
                   "RTE-bin/input1; the --task-splits are read, both languages), or raw text file(s), read as given")
    p.add_argument("--task-splits", default="train", metavar="SPLITS",
                   help="splits of a fairseq-preprocess --task-data that make V_task, comma-separated (default: train, "
                   "the fine-tuning data, as the paper's Section 5.3 says; train1, train2... count as train). 'all' "
                   "reads every split, so tokens found only in the test references would count; surgery.json lists "
                   "the files read")
    p.add_argument("--gpt2-encoder-json", help="GPT-2 encoder.json, to tokenize raw-text --task-data")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 vocab.bpe, to tokenize raw-text --task-data")
    p.add_argument("--alpha", type=float, default=100.0,
                   help="replace the last min(alpha%% |V|, |V_task|) task tokens in frequency order, alpha in [0, 100] "
                   "(paper: CNNDM 100, Y-BIGPATENT 30, XSum 10, BillSum 7, MRPC 5, RTE 3; default 100)")
    p.add_argument("--method", choices=SURGERY_METHODS, default="definitionemb",
                   help="definitionemb (default), or a baseline applied to the whole matrix: deldirection is the "
                   "paper's Eq. 3 as printed (mean removed, projections of the uncentred vector on the top "
                   "D = max(1, d // 100) principal directions of the centred matrix subtracted), "
                   "deldirection-centred projects the centred vector instead, del-zscore is Eq. 3 then a "
                   "z-score per dimension")
    p.add_argument("--out", help="output checkpoint directory (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--force", action="store_true",
                   help="write replacement rows that fail the sanity guard (mean norm ratio new/old outside [1/3, 3], "
                   "or, over >= 10 rows, mean cosine to the replaced rows not 3 standard errors above chance); the "
                   "figures are in surgery.json's 'sanity' either way")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--no-isotropy", action="store_true",
                   help="leave isotropy out of the report (I(E) per frequency group before and after, the paper's "
                   "convention and the sign-invariant one; its cost: benchmarks/README.md)")
    p.add_argument("--verify", metavar="OUT", help="check a surgery output against --against")
    p.add_argument("--against", metavar="ORIGINAL", help="the original checkpoint (directory or model.pt) for --verify")
    return p


def summary(report: dict, out: str | None, dry_run: bool) -> str:
    verb = "would change" if dry_run else "changed"
    lines = [f"{report['method']}: {report['num_changed']} rows {verb} in {', '.join(report['embedding_keys'])}"]
    if "budget" in report:
        lines.append(f"  alpha {report['alpha']:g}: budget min(floor(alpha% * {report['vocabulary']}), "
                     f"{report['task_vocabulary']} task tokens) = {report['budget']}; "
                     f"{report['requested_without_definition']} requested rows had no definition (skipped)")
        lines.append(f"  V_task from {len(report['task_files'])} file(s), splits {','.join(report['task_splits'])}")
    ids, tokens = report["changed_ids"], report["changed_tokens"]
    if dry_run and ids:
        shown = [f"{i}:{t}" for i, t in zip(ids, tokens)]
        lines.append("  rows: " + " ".join(shown if len(shown) <= 40 else shown[:20] + ["..."] + shown[-20:]))
    for name, g in report["per_group"].items():
        if g["changed"]:
            lines.append(f"  {name:8s} {g['changed']:6d} changed: mean norm {g['norm_before']:.3f} -> {g['norm_after']:.3f}, "
                         f"mean cosine to original {g['cosine_to_original']:.3f}")
    sanity = report.get("sanity")
    if sanity and sanity.get("norm_ratio") is not None:
        z = "n/a" if sanity["cosine_z"] is None else f"{sanity['cosine_z']:.1f}"
        lines.append(f"  sanity: norm ratio {sanity['norm_ratio']:.3f}, cosine to replaced {sanity['cosine_to_replaced']:.3f} "
                     f"(chance {sanity['cosine_chance']:.3f}, z {z})"
                     + ("; FORCED past: " + "; ".join(sanity["problems"]) if sanity["forced"] else ""))
    if report["isotropy"] is not None:
        for label, convention in (("isotropy (paper: eig's signs)", "paper"), ("isotropy (sign-invariant)   ", "sign_invariant")):
            iso_b, iso_a = report["isotropy"]["before"][convention], report["isotropy"]["after"][convention]
            lines.append(f"  {label} " + ", ".join(f"{g} {iso_b[g]:.3f} -> {iso_a[g]:.3f}" for g in iso_b))
    lines.append(f"  -> {out} ({report['seconds']} s); check it with: defemb-surgery --verify {out} "
                 f"--against {report['checkpoint']}" if not dry_run else "  (dry run: nothing written)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_cli_logging()
    from fairseq_defemb.surgery.swap import swap_embeddings, verify

    if args.verify:
        if not args.against:
            parser.error("--verify OUT needs --against ORIGINAL")
        ok, problems = verify(args.verify, args.against)
        print(f"verified {args.verify}: only the listed rows changed, tied copies equal, everything else bitwise equal"
              if ok else f"verification of {args.verify} FAILED:\n  " + "\n  ".join(problems))
        return 0 if ok else 1
    if not args.checkpoint:
        parser.error("--checkpoint is required")
    if not args.out and not args.dry_run:
        parser.error("--out is required (or --dry-run)")
    try:
        report = swap_embeddings(
            args.checkpoint, args.out, dict_path=args.dict, embeddings=args.embeddings, task_data=args.task_data or [],
            alpha=args.alpha, method=args.method, gpt2_encoder_json=args.gpt2_encoder_json,
            gpt2_vocab_bpe=args.gpt2_vocab_bpe, task_splits=args.task_splits.split(","), overwrite=args.overwrite,
            dry_run=args.dry_run, isotropy=not args.no_isotropy, force=args.force)
    except (OSError, ValueError) as err:  # SurgeryError is a ValueError
        print(f"defemb-surgery: error: {err}", file=sys.stderr)
        return 2
    print(summary(report, args.out, args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
