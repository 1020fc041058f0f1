"""``defemb-analyze``: the paper's measurements of embedding geometry, as one tool.

    defemb-analyze --checkpoint A/model.pt [--compare B/model.pt] --dict dict.txt --out report/
        isotropy I(E) per frequency group (Table 23), numeric Max Difference (Section 6.3),
        nearest neighbours, drift between checkpoints and 2D projections (Figures 2, 6).
        Writes report.json, summary.md and projection.png into --out, atomically.
    defemb-analyze rouge --hyp H --ref R
        ROUGE-1/2/L F1 as fairseq's BART example reports it (files2rouge: ROUGE-1.5.5.pl
        -c 95 -r 1000 -n 2 -a on PTB-tokenized, lower-cased text) and rouge-score side by side
    defemb-analyze significance --ref R --baseline H_seed1,H_seed2 --system S_seed1,S_seed2
        paired bootstrap (Koehn 2004) over the seeds pooled, 1,000 seeded resamples; per-example
        ROUGE F1 (rouge-score), or 0/1 correctness with --metric accuracy (GLUE: one label per line)
    defemb-analyze rare-subset --data-bin DIR [--threshold 40000 --min-fraction 0.05]
        the rare-token test subset of Appendix B.2 from a fairseq-binarized dataset

Python: ``analyze_matrices(matrices, dictionary, ...)`` returns the report dict in-process.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from defemb.atomic_io import atomic_output_dir, write_json
from defemb.cli.logging_setup import configure_cli_logging
from defemb.surgery.checkpoint import read_embedding_matrix
from defemb.analysis.frequency_groups import frequency_groups
from defemb.analysis.geometry import drift, plot_projections
from defemb.analysis.isotropy import isotropy_by_group
from defemb.analysis.neighbours import looks_like_gpt2_ids, max_difference, nearest_neighbours, numeric_tokens, token_surfaces
from defemb.data.vocabulary import MASK_SYMBOL, load_model_dictionary

GROUP_ORDER = ("frequent", "medium", "rare", "all")
MODES = ("rouge", "significance", "rare-subset")


def find_token(token: str, dictionary, surfaces: list[str]) -> int:
    """Id of ``token``: a dictionary symbol, else the first id whose surface form is ``token``."""
    if token in dictionary.indices:
        return dictionary.index(token)
    matches = [i for i, s in enumerate(surfaces) if s == token]
    if not matches:
        raise ValueError(f"--neighbours-of {token!r}: not in the dictionary")
    return matches[0]


def model_groups(dictionary) -> dict[str, np.ndarray]:
    mask = dictionary.index(MASK_SYMBOL) if MASK_SYMBOL in dictionary.indices else None
    return frequency_groups(len(dictionary), dictionary.nspecial, mask)


def analyze_matrices(matrices: dict[str, np.ndarray], dictionary, surfaces: list[str] | None = None,
                     neighbours_of: list[str] = (), k: int = 8, metric: str = "cosine", progress: bool = True,
                     numeric: bool | None = None) -> dict:
    """Isotropy per frequency group, numeric Max Difference and nearest neighbours per matrix.

    ``dictionary``: the fairseq Dictionary of the rows (``load_model_dictionary``: dict.txt +
    ``<mask>``). ``surfaces``: token surface forms (``token_surfaces``); default: the symbols with
    ``##``/``\\u2581`` stripped. ``numeric``: compute Max Difference (default: unless the symbols
    are undecoded GPT-2 ids, which would all look numeric).
    """
    if surfaces is None:
        surfaces = token_surfaces(dictionary)
    groups = model_groups(dictionary)
    specials = set(range(dictionary.nspecial)) | ({dictionary.index(MASK_SYMBOL)} if MASK_SYMBOL in dictionary.indices else set())
    report = {"groups": {g: int(len(ids)) for g, ids in groups.items()}, "neighbour_metric": metric, "matrices": {}}
    if numeric is None:
        numeric = not (looks_like_gpt2_ids(dictionary) and surfaces == token_surfaces(dictionary))
    if numeric:
        num_ids, num_values = numeric_tokens(surfaces, dictionary.nspecial)
        num_ids, num_values = num_ids[num_ids < len(dictionary)], num_values[num_ids < len(dictionary)]
        report["numeric_tokens"] = int(len(num_ids))
    else:
        num_ids, num_values = np.zeros(0, np.int64), np.zeros(0)
        report["numeric_tokens"] = None
        report["numeric_note"] = "dict.txt holds GPT-2 BPE ids: pass --gpt2-encoder-json to decode them for Max Difference"
    targets = {token: find_token(token, dictionary, surfaces) for token in neighbours_of}
    for name, E in tqdm(matrices.items(), desc="analyze", disable=not progress):
        if len(E) != len(dictionary):
            raise ValueError(f"{name}: {len(E)} embedding rows but the dictionary has {len(dictionary)} symbols")
        entry = {"isotropy": isotropy_by_group(E, groups)}
        if len(num_ids) > 3:
            entry["max_difference"] = max_difference(E, num_ids, num_values)
        entry["neighbours"] = {
            token: [surfaces[i] for i, _ in nearest_neighbours(E, index, k, metric=metric, exclude=specials)]
            for token, index in targets.items()
        }
        report["matrices"][name] = entry
    return report


def summary_markdown(report: dict) -> str:
    """The paper's Table 23 layout (rows = matrices; Frequent / Medium / Rare / All) + extras."""
    lines = ["| embeddings | " + " | ".join(g.capitalize() for g in GROUP_ORDER) + " | Max Difference |",
             "|---|" + "---:|" * (len(GROUP_ORDER) + 1)]
    for name, entry in report["matrices"].items():
        iso = " | ".join(f"{entry['isotropy'][g]:.3f}" for g in GROUP_ORDER)
        md = f"{entry['max_difference']:.2f}" if "max_difference" in entry else "n/a"
        lines.append(f"| {name} | {iso} | {md} |")
    text = ("Isotropy I(E) per frequency group (paper Table 23; specials excluded) and numeric Max Difference "
            f"(Section 6.3, {report.get('numeric_tokens') or 0} numeric tokens; lower is better).\n\n")
    text += "\n".join(lines) + "\n"
    if report.get("numeric_note"):
        text += f"\nMax Difference: n/a, {report['numeric_note']}.\n"
    tokens = list(dict.fromkeys(t for e in report["matrices"].values() for t in e["neighbours"]))
    for token in tokens:
        text += f"\nNearest neighbours ({report.get('neighbour_metric', 'cosine')}) of `{token}`:\n\n"
        for name, entry in report["matrices"].items():
            text += f"- {name}: " + ", ".join(f"`{n}`" for n in entry["neighbours"][token]) + "\n"
    if "drift" in report:
        text += (f"\nDrift {report['drift_pair'][0]} -> {report['drift_pair'][1]} (mean over the same rows):\n\n"
                 "| group | mean L2 | mean cosine |\n|---|---:|---:|\n")
        text += "".join(f"| {g} | {v['mean_l2']:.4f} | {v['mean_cosine']:.4f} |\n" for g, v in report["drift"].items())
    return text


def read_matrix(path: str | Path) -> np.ndarray:
    """An embedding matrix from a fairseq checkpoint (file or directory), a .npy, or a .pt tensor."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path).astype(np.float32, copy=False)
    if path.is_file() and path.suffix == ".pt":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError:  # legacy serialization cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(obj, torch.Tensor):
            return obj.float().numpy()
    return read_embedding_matrix(path).numpy()


def unique_name(name: str, taken: dict) -> str:
    candidate, n = name or "matrix", 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def geometry_main(args) -> int:
    dictionary = load_model_dictionary(args.dict)
    surfaces = token_surfaces(dictionary, args.gpt2_encoder_json)
    paths: dict[str, str] = {}
    paths[unique_name(Path(args.checkpoint).parent.name or "A", paths)] = args.checkpoint
    if args.compare:
        paths[unique_name(Path(args.compare).parent.name or "B", paths)] = args.compare
    for spec in args.embeddings or []:
        name, _, path = spec.partition("=")
        if not path or not name:
            raise ValueError(f"--embeddings {spec}: expected NAME=PATH")
        paths[unique_name(name, paths)] = path
    matrices = {}
    for name, path in tqdm(paths.items(), desc="read", disable=args.no_progress):
        E = read_matrix(path)
        if E.shape[0] != len(dictionary):
            raise ValueError(f"{path}: {E.shape[0]} embedding rows but {args.dict} (+ <mask>) gives {len(dictionary)}")
        matrices[name] = E
    report = analyze_matrices(matrices, dictionary, surfaces, args.neighbours_of or [], k=args.k, metric=args.metric,
                              progress=not args.no_progress)
    report["sources"] = paths
    groups = model_groups(dictionary)
    names = list(matrices)
    if args.compare:
        if matrices[names[0]].shape != matrices[names[1]].shape:
            raise ValueError(f"--compare: shapes differ ({matrices[names[0]].shape} vs {matrices[names[1]].shape})")
        report["drift_pair"] = names[:2]
        report["drift"] = drift(matrices[names[0]], matrices[names[1]], groups)
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        highlight = {t: find_token(t, dictionary, surfaces) for t in (args.neighbours_of or [])[:3]}
        plot_projections(matrices, groups, tmp / "projection.png", highlight=highlight)
        report["figures"] = ["projection.png"]
        write_json(tmp / "report.json", report)
        (tmp / "summary.md").write_text(summary_markdown(report))
    print(summary_markdown(report))
    print(f"-> {args.out} (report.json, summary.md, projection.png)")
    return 0


def read_lines(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def rouge_main(args) -> int:
    from defemb.analysis.rouge import perl_available, rouge_perl, rouge_python

    hyp, ref = read_lines(args.hyp), read_lines(args.ref)
    tokenize = not args.no_tokenize
    result = {"rouge-score": rouge_python(hyp, ref, tokenize, args.stemming)}
    if perl_available():
        result["ROUGE-1.5.5"] = rouge_perl(hyp, ref, tokenize, args.stemming)
    else:
        result["ROUGE-1.5.5"] = "unavailable: perl -MXML::Parser -e1 fails (apt-get install libxml-parser-perl)"
    print(json.dumps(result, indent=2))
    return 0


def significance_main(args) -> int:
    from defemb.analysis.significance import correctness, paired_bootstrap, pool

    ref = read_lines(args.ref)
    baseline_files, system_files = args.baseline.split(","), args.system.split(",")
    if len(baseline_files) != len(system_files):
        raise ValueError(f"{len(baseline_files)} baseline seeds but {len(system_files)} system seeds: pair them seed by seed")

    def per_seed(files: list[str]) -> dict[str, list]:
        scores: dict[str, list] = {}
        for path in files:
            hyp = read_lines(path)
            if args.metric == "accuracy":
                scores.setdefault("accuracy", []).append(correctness([h.strip() for h in hyp], [r.strip() for r in ref]))
            else:
                from defemb.analysis.rouge import rouge_python_per_example

                for metric, values in rouge_python_per_example(hyp, ref, not args.no_tokenize).items():
                    scores.setdefault(metric, []).append(values)
        return scores

    base, system = per_seed(baseline_files), per_seed(system_files)
    result = {m: paired_bootstrap(pool(base[m]), pool(system[m]), args.resamples, args.seed) for m in base}
    print(json.dumps(result, indent=2))
    return 0


def rare_subset_main(args) -> int:
    from defemb.analysis.rare_subset import rare_subset_binarized

    chosen = rare_subset_binarized(args.data_bin, args.test_split, args.train_splits, args.threshold, args.min_fraction)
    text = "".join(f"{i}\n" for i in chosen)
    if args.output:
        from defemb.atomic_io import write_text

        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    print(f"{len(chosen)} test pairs kept", file=sys.stderr)
    return 0


def build_parser(mode: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"defemb-analyze{'' if mode == 'geometry' else ' ' + mode}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if mode == "geometry":
        p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (model.pt) whose embeddings to analyze")
        p.add_argument("--compare", help="a second checkpoint (e.g. after fine-tuning): drift and joint projection")
        p.add_argument("--embeddings", nargs="*", metavar="NAME=PATH",
                       help="more matrices side by side: fairseq checkpoints, .npy, or .pt tensors")
        p.add_argument("--dict", required=True, help="the dict.txt of the checkpoints (<mask> is appended)")
        p.add_argument("--gpt2-encoder-json", help="decode GPT-2 BPE ids (bart.large/roberta.base dict.txt)")
        p.add_argument("--neighbours-of", nargs="*", metavar="TOKEN", help="tokens (symbol or surface) whose neighbours to list")
        p.add_argument("--k", type=int, default=8, help="neighbours per token (default 8)")
        p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="neighbour metric (default cosine)")
        p.add_argument("--out", required=True, help="report directory (written atomically)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    elif mode == "rouge":
        p.add_argument("--hyp", required=True, help="hypotheses, one per line")
        p.add_argument("--ref", required=True, help="references, one per line")
        p.add_argument("--stemming", action="store_true", help="Porter stemming (ROUGE -m); files2rouge does not stem")
        p.add_argument("--no-tokenize", action="store_true", help="input is already PTB-tokenized")
    elif mode == "significance":
        p.add_argument("--ref", required=True, help="references (ROUGE) or gold labels (accuracy), one per line")
        p.add_argument("--baseline", required=True, help="baseline outputs, comma-separated files (one per seed)")
        p.add_argument("--system", required=True, help="system outputs, comma-separated files (same seeds, same order)")
        p.add_argument("--metric", choices=("rouge", "accuracy"), default="rouge",
                       help="per-example ROUGE F1 (rouge-score) or 0/1 correctness (default rouge)")
        p.add_argument("--no-tokenize", action="store_true", help="ROUGE input is already PTB-tokenized")
        p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
        p.add_argument("--seed", type=int, default=12345, help="bootstrap seed")
    else:
        p.add_argument("--data-bin", required=True, help="fairseq-binarized data directory")
        p.add_argument("--test-split", default="test.source-target.target", help="binarized test targets")
        p.add_argument("--train-splits", nargs="+", default=["train.source-target.source", "train.source-target.target"],
                       help="binarized splits whose tokens count as 'in the training set'")
        p.add_argument("--threshold", type=int, default=40000, help="rare = id above this (BART: 40,000)")
        p.add_argument("--min-fraction", type=float, default=0.05, help="share of rare target tokens (BART: 0.05)")
        p.add_argument("--output", help="write kept test indices here (default stdout)")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = argv.pop(0) if argv and argv[0] in MODES else "geometry"
    args = build_parser(mode).parse_args(argv)
    configure_cli_logging()
    main = {"geometry": geometry_main, "rouge": rouge_main, "significance": significance_main,
            "rare-subset": rare_subset_main}[mode]
    try:
        return main(args)
    except (FileNotFoundError, ValueError, KeyError, FileExistsError, RuntimeError) as err:
        print(f"defemb-analyze: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli_main())
