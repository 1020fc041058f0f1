"""The paper's measurements of embedding geometry as one report (the library behind ``defemb-analyze``).

``analyze_matrices(matrices, dictionary, ...)`` returns the report dict in-process;
``analyze_checkpoints(...)`` reads checkpoints and writes report.json, summary.md and
projection.png; ``score_rouge`` and ``significance_test`` score output files.
"""
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fairseq_defemb.atomic_io import atomic_output_dir, naming_failed_writes, write_json
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix, torch_load
from fairseq_defemb.analysis.frequency_groups import frequency_groups, groups_convention
from fairseq_defemb.analysis.geometry import drift, plot_projections
from fairseq_defemb.analysis.isotropy import AUTHORS_CLIP, CONVENTIONS, isotropy_by_group
from fairseq_defemb.analysis.neighbours import (looks_like_gpt2_ids, max_difference, nearest_neighbours, numeric_tokens,
                                       token_surfaces, word_initial_pieces)
from fairseq_defemb.data.vocabulary import MASK_SYMBOL, load_model_dictionary

GROUP_ORDER = ("frequent", "medium", "rare", "all")
CONVENTION_LABELS = {"paper": "paper (eig's signs)", "sign_invariant": "sign-invariant (both signs)"}


def find_token(token: str, dictionary, surfaces: list[str], word_initial: list[bool] | None = None) -> int:
    """Id of ``token``: a dictionary symbol, else the model's own form of the word.

    A plain word (``everlasting``), GPT-2's leading-space form (``" everlasting"``, ``Ġeverlasting``)
    and a WordPiece/sentencepiece piece (``##ing``, ``\u2581word``) all find the id whose surface is the
    word, preferring the word-initial piece (``word_initial``, from :func:`word_initial_pieces`). A word
    the model only has in another case is an error that names the forms it has.
    """
    if token in dictionary.indices:
        return dictionary.index(token)
    word = token.strip().removeprefix("\u0120").removeprefix("##").lstrip("\u2581")
    matches = [i for i, s in enumerate(surfaces) if s == word and i >= dictionary.nspecial]
    if word_initial is not None:
        matches.sort(key=lambda i: not word_initial[i])  # stable: the first word-initial piece, else the first
    if matches:
        return matches[0]
    other_case = sorted({surfaces[i] for i, s in enumerate(surfaces) if s.lower() == word.lower() and i >= dictionary.nspecial})
    hint = f"; the model has {', '.join(repr(f) for f in other_case)}" if other_case else ""
    raise ValueError(f"--neighbours-of {token!r}: no token of this model spells {word!r}{hint}")


def model_groups(dictionary) -> dict[str, np.ndarray]:
    mask = dictionary.index(MASK_SYMBOL) if MASK_SYMBOL in dictionary.indices else None
    return frequency_groups(len(dictionary), dictionary.nspecial, mask)


def model_groups_convention(dictionary) -> str:
    """How ``model_groups`` forms the groups, for the isotropy signatures."""
    return groups_convention(dictionary.nspecial, MASK_SYMBOL in dictionary.indices)


def analyze_matrices(matrices: dict[str, np.ndarray], dictionary, surfaces: list[str] | None = None,
                     neighbours_of: list[str] = (), k: int = 8, metric: str = "cosine", progress: bool = True,
                     numeric: bool | None = None, word_initial: list[bool] | None = None) -> dict:
    """Isotropy per frequency group (both conventions, ``isotropy_by_group``), numeric Max Difference and
    nearest neighbours per matrix.

    ``dictionary``: the fairseq Dictionary of the rows (``load_model_dictionary``: dict.txt +
    ``<mask>``). ``surfaces``: token surface forms (``token_surfaces``); default: the symbols with
    ``##``/``\\u2581`` stripped. ``numeric``: compute Max Difference (default: unless the symbols
    are undecoded GPT-2 ids, which would all look numeric). ``word_initial``: per id, whether the piece
    starts a word (:func:`word_initial_pieces`), so a plain word in ``neighbours_of`` finds its word-initial form.
    """
    if surfaces is None:
        surfaces = token_surfaces(dictionary)
    groups, described = model_groups(dictionary), model_groups_convention(dictionary)
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
    targets = {token: find_token(token, dictionary, surfaces, word_initial) for token in neighbours_of}
    for name, E in tqdm(matrices.items(), desc="analyze", disable=not progress):
        if len(E) != len(dictionary):
            raise ValueError(f"{name}: {len(E)} embedding rows but the dictionary has {len(dictionary)} symbols")
        entry = {"isotropy": isotropy_by_group(E, groups, described)}
        if len(num_ids) > 3:
            entry["max_difference"] = max_difference(E, num_ids, num_values)
        entry["neighbours"] = {
            token: [surfaces[i] for i, _ in nearest_neighbours(E, index, k, metric=metric, exclude=specials)]
            for token, index in targets.items()
        }
        report["matrices"][name] = entry
    return report


def summary_markdown(report: dict) -> str:
    """The paper's Table 23 layout (rows = matrices, one per isotropy convention; Frequent / Medium / Rare /
    All) + Max Difference, the conventions' signatures, neighbours and drift."""
    lines = ["| embeddings | I(E) convention | " + " | ".join(g.capitalize() for g in GROUP_ORDER) + " | Max Difference |",
             "|---|---|" + "---:|" * (len(GROUP_ORDER) + 1)]
    for name, entry in report["matrices"].items():
        md = f"{entry['max_difference']:.2f}" if "max_difference" in entry else "n/a"
        for convention in CONVENTIONS:
            iso = " | ".join(f"{entry['isotropy'][convention][g]:.3f}" for g in GROUP_ORDER)
            lines.append(f"| {name} | {CONVENTION_LABELS[convention]} | {iso} | {md if convention == 'paper' else ''} |")
    first = next(iter(report["matrices"].values()), None)
    text = ("Isotropy I(E) per frequency group (paper Table 23) and numeric Max Difference "
            f"(Section 6.3, {report.get('numeric_tokens') or 0} numeric tokens; lower is better).\n\n")
    text += "\n".join(lines) + "\n"
    if first is not None:
        text += "\nConventions:\n\n" + "".join(f"- {CONVENTION_LABELS[c]}: `{first['isotropy']['conventions'][c]}`\n"
                                                for c in CONVENTIONS)
        largest = max(v for e in report["matrices"].values() for v in e["isotropy"]["max_abs_projection"].values())
        text += (f"- {first['isotropy']['clipping']}; the largest here is {largest:.1f}"
                 + (" (no value would change)" if largest <= AUTHORS_CLIP else " (clipping would change the values above it)") + "\n")
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
        obj = torch_load(path)
        if isinstance(obj, torch.Tensor):
            return obj.float().numpy()
    return read_embedding_matrix(path).numpy()


def unique_name(name: str, taken: dict) -> str:
    candidate, n = name or "matrix", 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def analyze_checkpoints(checkpoint: str | Path, out: str | Path, *, dict_path: str | Path,
                        compare: str | Path | None = None, embeddings: dict[str, str | Path] | None = None,
                        gpt2_encoder_json: str | Path | None = None, neighbours_of: list[str] | tuple = (),
                        k: int = 8, metric: str = "cosine", overwrite: bool = False, progress: bool = True) -> dict:
    """Geometry report of ``checkpoint`` (and ``compare``, and more named ``embeddings``) into ``out``:
    report.json, summary.md and projection.png, written atomically. Returns the report."""
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"--out {out}: exists; pick a new directory or pass --overwrite")
    dictionary = load_model_dictionary(dict_path)
    surfaces = token_surfaces(dictionary, gpt2_encoder_json)
    word_initial = word_initial_pieces(dictionary, gpt2_encoder_json)
    if neighbours_of and looks_like_gpt2_ids(dictionary) and not gpt2_encoder_json:
        raise ValueError(f"--neighbours-of: {dict_path} holds GPT-2 BPE ids; pass --gpt2-encoder-json so words can be "
                         "looked up")
    targets = {t: find_token(t, dictionary, surfaces, word_initial) for t in neighbours_of}  # fail before the work
    paths: dict[str, str] = {}
    paths[unique_name(Path(checkpoint).parent.name or "A", paths)] = str(checkpoint)
    if compare:
        paths[unique_name(Path(compare).parent.name or "B", paths)] = str(compare)
    for name, path in (embeddings or {}).items():
        paths[unique_name(name, paths)] = str(path)
    matrices, notes = {}, []
    mask = dictionary.index(MASK_SYMBOL)
    for name, path in tqdm(paths.items(), desc="read", disable=not progress):
        E = read_matrix(path)
        if E.shape[0] == len(dictionary) - 1 and mask == len(dictionary) - 1:
            # fairseq's translation and sentence-prediction tasks drop BART/RoBERTa's <mask> row
            # on load, so fine-tuned checkpoints lack it; no measurement reads that row.
            filler = next(iter(matrices.values()))[mask:] if matrices else np.zeros((1, E.shape[1]), E.dtype)
            E = np.concatenate([E, filler.astype(E.dtype)])
            notes.append(f"{name} has no <mask> row (fine-tuned without it); a stand-in row was added, which no measurement reads")
        if E.shape[0] != len(dictionary):
            raise ValueError(f"{path}: {E.shape[0]} embedding rows but {dict_path} (+ <mask>) gives {len(dictionary)}")
        matrices[name] = E
    report = analyze_matrices(matrices, dictionary, surfaces, list(neighbours_of), k=k, metric=metric,
                              progress=progress, word_initial=word_initial)
    report["sources"] = paths
    if notes:
        report["notes"] = notes
    groups = model_groups(dictionary)
    names = list(matrices)
    if compare:
        if matrices[names[0]].shape != matrices[names[1]].shape:
            raise ValueError(f"--compare: shapes differ ({matrices[names[0]].shape} vs {matrices[names[1]].shape})")
        report["drift_pair"] = names[:2]
        report["drift"] = drift(matrices[names[0]], matrices[names[1]], groups)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        highlight = {t: targets[t] for t in list(neighbours_of)[:3]}
        with naming_failed_writes(Path(out) / "projection.png"):
            plot_projections(matrices, groups, tmp / "projection.png", highlight=highlight)
        report["figures"] = ["projection.png"]
        with naming_failed_writes(Path(out) / "report.json"):
            write_json(tmp / "report.json", report)
        with naming_failed_writes(Path(out) / "summary.md"):
            (tmp / "summary.md").write_text(summary_markdown(report))
    return report


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, split on "\\n" only, a trailing "\\r" dropped.

    ``str.splitlines()`` also breaks at U+2028, U+2029, U+0085, form feed, vertical tab, a lone CR
    and the \\x1c-\\x1e separators: one such character inside a summary would shift every later
    hypothesis against its reference.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}: line {line}: not UTF-8 ({err.reason}); convert the file to UTF-8") from err
    lines = text.split("\n")
    if lines[-1] == "":  # the newline ending the last line starts no new one
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_aligned(outputs: str | Path, references: str | Path) -> tuple[list[str], list[str]]:
    """Output and reference lines, checked to be as many (one output per reference line)."""
    out, ref = read_lines(outputs), read_lines(references)
    if len(out) != len(ref):
        raise ValueError(f"{outputs} has {len(out)} lines but {references} has {len(ref)}: "
                         "outputs and references must be aligned line by line")
    return out, ref


def score_rouge(hyp: str | Path, ref: str | Path, *, tokenize: bool = True, stemming: bool = False,
                rouge_root: str | Path | None = None) -> dict:
    """ROUGE-1/2/L F1 of a hypothesis file against a reference file: ROUGE-1.5.5 (sacrerouge) and
    rouge-score side by side, each with its signature."""
    from fairseq_defemb.analysis.rouge import rouge_155, rouge_score_result, sacrerouge_unready

    hyps, refs = read_aligned(hyp, ref)
    problem = sacrerouge_unready(rouge_root)
    return {
        "ROUGE-1.5.5": f"unavailable: {problem}" if problem else
        rouge_155(hyps, refs, tokenize=tokenize, stemming=stemming, rouge_root=rouge_root).as_dict(),
        "rouge-score": rouge_score_result(hyps, refs, tokenize=tokenize, stemming=stemming).as_dict(),
        "pairs": len(hyps),
    }


def significance_test(ref: str | Path, baseline: list[str | Path], system: list[str | Path], *, metric: str = "rouge",
                      tokenize: bool = True, stemming: bool = False, scorer: str = "auto",
                      rouge_root: str | Path | None = None, resamples: int = 1000, seed: int = 12345) -> dict:
    """Paired bootstrap of ``system`` against ``baseline`` (one output file per seed, same seeds in the same order).

    ROUGE: per-summary F1 from ROUGE-1.5.5 via sacrerouge (``scorer="auto"`` falls back to
    rouge-score where sacrerouge cannot run; each metric's result carries the signature of the
    scores it resampled). Accuracy: 0/1 correctness per line.
    """
    from fairseq_defemb.analysis.rouge import resolve_backend, rouge, signature
    from fairseq_defemb.analysis.significance import correctness, paired_bootstrap, pool

    if len(baseline) != len(system) or not baseline:
        raise ValueError(f"{len(baseline)} baseline seeds but {len(system)} system seeds: pair them seed by seed")
    backend = resolve_backend(scorer, rouge_root) if metric == "rouge" else None

    def per_seed(files: list[str | Path]) -> dict[str, list]:
        scores: dict[str, list] = {}
        for path in files:
            hyp, refs = read_aligned(path, ref)
            if metric == "accuracy":
                scores.setdefault("accuracy", []).append(correctness([h.strip() for h in hyp], [r.strip() for r in refs]))
            else:
                result = rouge(hyp, refs, backend=backend, tokenize=tokenize, stemming=stemming, rouge_root=rouge_root)
                for name, values in result.per_summary.items():
                    scores.setdefault(name, []).append(values)
        return scores

    base, sys_scores = per_seed(baseline), per_seed(system)
    tests = {m: paired_bootstrap(pool(base[m]), pool(sys_scores[m]), resamples, seed) for m in base}
    if metric == "rouge":
        for test in tests.values():
            test["signature"] = signature(backend, tokenize, stemming) + "|per-summary F1"
    return tests
