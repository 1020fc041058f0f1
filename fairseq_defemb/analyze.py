"""``defemb-analyze``: the paper's measurements of embedding geometry, as one tool.

    defemb-analyze --checkpoint A/model.pt [--compare B/model.pt] --dict dict.txt --out report/
        isotropy I(E) per frequency group (Table 23), numeric Max Difference (Section 6.3),
        nearest neighbours, drift between checkpoints and 2D projections (Figures 2, 6)
    defemb-analyze rouge --hyp H --ref R
        ROUGE-1/2/L F1 with ROUGE-1.5.5 and rouge-score side by side
    defemb-analyze significance --ref R --baseline H_seed1,H_seed2 --system S_seed1,S_seed2
        paired bootstrap (Koehn 2004) over the seeds pooled, 1,000 resamples

Writes report.json, summary.md and PNGs into --out, atomically.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.checkpoint_embeddings import read_embedding_matrix
from fairseq_defemb.frequency_groups import frequency_groups
from fairseq_defemb.geometry import drift, plot_projections
from fairseq_defemb.isotropy import isotropy_by_group
from fairseq_defemb.neighbours import max_difference, nearest_neighbours, numeric_tokens, token_surfaces
from fairseq_defemb.rouge import perl_available, rouge_perl, rouge_python, rouge_python_per_example
from fairseq_defemb.significance import paired_bootstrap
from fairseq_defemb.vocabulary import load_model_dictionary

GROUP_ORDER = ("frequent", "medium", "rare", "all")


def find_token(token: str, dictionary, surfaces: list[str]) -> int:
    if token in dictionary.indices:
        return dictionary.index(token)
    matches = [i for i, s in enumerate(surfaces) if s == token]
    if not matches:
        raise ValueError(f"--neighbours-of {token!r}: not in the dictionary")
    return matches[0]


def analyze_matrices(matrices: dict[str, np.ndarray], dictionary, surfaces: list[str],
                     neighbours_of: list[str] = (), k: int = 8, progress: bool = True) -> dict:
    """Isotropy per group, Max Difference and neighbours for each named matrix."""
    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))
    num_ids, num_values = numeric_tokens(surfaces, dictionary.nspecial)
    specials = set(range(dictionary.nspecial)) | {dictionary.index("<mask>")}
    report = {"groups": {g: int(len(ids)) for g, ids in groups.items()}, "numeric_tokens": int(len(num_ids)), "matrices": {}}
    for name, E in tqdm(matrices.items(), desc="analyze", disable=not progress):
        entry = {"isotropy": isotropy_by_group(E, groups)}
        if len(num_ids) > 3:
            entry["max_difference"] = max_difference(E, num_ids, num_values)
        entry["neighbours"] = {
            token: [surfaces[i] for i, _ in nearest_neighbours(E, find_token(token, dictionary, surfaces), k, exclude=specials)]
            for token in neighbours_of
        }
        report["matrices"][name] = entry
    return report


def summary_markdown(report: dict) -> str:
    lines = ["| embeddings | " + " | ".join(g.capitalize() for g in GROUP_ORDER) + " | Max Difference |",
             "|---|" + "---:|" * (len(GROUP_ORDER) + 1)]
    for name, entry in report["matrices"].items():
        iso = " | ".join(f"{entry['isotropy'][g]:.3f}" for g in GROUP_ORDER)
        md = f"{entry['max_difference']:.1f}" if "max_difference" in entry else "n/a"
        lines.append(f"| {name} | {iso} | {md} |")
    text = "Isotropy I(E) per frequency group (paper Table 23) and numeric Max Difference (Section 6.3; lower is better).\n\n"
    text += "\n".join(lines) + "\n"
    tokens = sorted({t for e in report["matrices"].values() for t in e["neighbours"]})
    for token in tokens:
        text += f"\nNearest neighbours of `{token}`:\n\n"
        for name, entry in report["matrices"].items():
            text += f"- {name}: " + ", ".join(f"`{n}`" for n in entry["neighbours"][token]) + "\n"
    if "drift" in report:
        text += "\nDrift from the first to the second checkpoint (mean over rows):\n\n| group | mean L2 | mean cosine |\n|---|---:|---:|\n"
        text += "".join(f"| {g} | {v['mean_l2']:.4f} | {v['mean_cosine']:.4f} |\n" for g, v in report["drift"].items())
    return text


def geometry_main(args) -> int:
    dictionary = load_model_dictionary(args.dict)
    surfaces = token_surfaces(dictionary, args.gpt2_encoder_json)
    paths = {Path(args.checkpoint).parent.name or "A": args.checkpoint}
    if args.compare:
        paths[(Path(args.compare).parent.name or "B") + (" (compare)" if Path(args.compare).parent.name in paths else "")] = args.compare
    for spec in args.embeddings or []:
        name, _, path = spec.partition("=")
        if not path:
            raise ValueError(f"--embeddings {spec}: expected NAME=PATH")
        paths[name] = path
    matrices = {}
    for name, path in paths.items():
        E = read_embedding_matrix(path).numpy()
        if E.shape[0] != len(dictionary):
            raise ValueError(f"{path}: {E.shape[0]} embedding rows but {args.dict} gives {len(dictionary)} symbols")
        matrices[name] = E
    report = analyze_matrices(matrices, dictionary, surfaces, args.neighbours_of or [], progress=not args.no_progress)
    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))
    names = list(matrices)
    if args.compare:
        report["drift"] = drift(matrices[names[0]], matrices[names[1]], groups)
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        highlight = {t: find_token(t, dictionary, surfaces) for t in (args.neighbours_of or [])[:3]}
        plot_projections(matrices, groups, tmp / "projection.png", highlight=highlight)
        report["figures"] = ["projection.png"]
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "summary.md").write_text(summary_markdown(report))
    print(summary_markdown(report))
    print(f"-> {args.out} (report.json, summary.md, projection.png)")
    return 0


def read_lines(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def rouge_main(args) -> int:
    hyp, ref = read_lines(args.hyp), read_lines(args.ref)
    result = {"rouge-score": rouge_python(hyp, ref)}
    if perl_available():
        result["ROUGE-1.5.5"] = rouge_perl(hyp, ref)
    print(json.dumps(result, indent=2))
    return 0


def significance_main(args) -> int:
    ref = read_lines(args.ref)

    def pooled(spec: str) -> dict[str, list[float]]:
        scores: dict[str, list[float]] = {}
        for path in spec.split(","):
            for metric, values in rouge_python_per_example(read_lines(path), ref).items():
                scores.setdefault(metric, []).extend(values)
        return scores

    base, system = pooled(args.baseline), pooled(args.system)
    result = {m: paired_bootstrap(base[m], system[m], args.resamples, args.seed) for m in base}
    print(json.dumps(result, indent=2))
    return 0


def build_parser(mode: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"defemb-analyze{'' if mode == 'geometry' else ' ' + mode}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if mode == "geometry":
        p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (model.pt) whose embeddings to analyze")
        p.add_argument("--compare", help="a second checkpoint (e.g. after fine-tuning): drift and joint projection")
        p.add_argument("--embeddings", nargs="*", metavar="NAME=PATH", help="more checkpoints to put side by side")
        p.add_argument("--dict", required=True, help="the dict.txt of the checkpoints")
        p.add_argument("--gpt2-encoder-json", help="decode GPT-2 BPE ids (bart.large/roberta.base dict.txt)")
        p.add_argument("--neighbours-of", nargs="*", metavar="TOKEN", help="tokens whose nearest neighbours to list")
        p.add_argument("--out", required=True, help="report directory (written atomically)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    elif mode == "rouge":
        p.add_argument("--hyp", required=True, help="hypotheses, one per line")
        p.add_argument("--ref", required=True, help="references, one per line")
    else:
        p.add_argument("--ref", required=True, help="references, one per line")
        p.add_argument("--baseline", required=True, help="baseline hypotheses, comma-separated files (one per seed)")
        p.add_argument("--system", required=True, help="system hypotheses, comma-separated files (same seeds)")
        p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
        p.add_argument("--seed", type=int, default=12345, help="bootstrap seed")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = argv.pop(0) if argv and argv[0] in ("rouge", "significance") else "geometry"
    args = build_parser(mode).parse_args(argv)
    try:
        return {"geometry": geometry_main, "rouge": rouge_main, "significance": significance_main}[mode](args)
    except (FileNotFoundError, ValueError, KeyError, FileExistsError) as err:
        print(f"defemb-analyze: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli_main())
