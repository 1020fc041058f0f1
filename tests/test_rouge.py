"""ROUGE as fairseq's BART example reports it (files2rouge -> ROUGE-1.5.5 -c 95 -r 1000 -n 2 -a)."""
import re
import subprocess

import numpy as np
import pytest

from defemb.analysis.rouge import (FILES2ROUGE_ARGS, perl_available, ptb_tokenize, rouge, rouge_home, rouge_perl,
                                  rouge_python, rouge_python_per_example, sentences)

needs_perl = pytest.mark.skipif(not perl_available(), reason="ROUGE-1.5.5 needs Perl XML::Parser (make install)")

# Fixed files, already PTB-tokenized and lower-cased, one sentence per line (SPL), as files2rouge writes them.
HYP_SENTENCES = [["police killed the gunman in the city .", "he was 25 ."], ["the cat sat on the mat today"],
                 ["stocks rose 3 % on monday ."]]
REF_SENTENCES = [["the gunman was killed by police .", "police said he was 25 years old ."], ["a cat sat on a mat"],
                 ["shares rose three percent monday ."]]
RAW_HYP = ["Police killed the gunman in the city. He was 25.", "the cat sat on the mat today", "Stocks rose 3% on Monday."]
RAW_REF = ["The gunman was killed by police. Police said he was 25 years old.", "a cat sat on a mat",
           "Shares rose three percent Monday."]
# ROUGE-1.5.5.pl's own output on those files with -c 95 -r 1000 -n 2 -a (run by hand once, Average_F x 100).
RECORDED_PERL = {"rouge1": 54.136, "rouge2": 21.639, "rougeL": 51.231}


def test_ptb_tokenization_and_files2rouge_sentence_split():
    assert ptb_tokenize('He said "don\'t go." It\'s 3.5 miles.') == "he said `` do n't go . '' it 's 3.5 miles ."
    assert ptb_tokenize("Stocks rose 3% on Monday.") == "stocks rose 3 % on monday ."
    assert sentences("police killed him . he was 25 .") == ["police killed him .", "he was 25 ."]
    assert [sentences(ptb_tokenize(h)) for h in RAW_HYP] == HYP_SENTENCES


def test_rouge_python_on_a_hand_example():
    scores = rouge_python(["the cat sat on the mat"], ["the cat is on the mat"])
    # unigrams: 5 of 6 match both ways -> F1 83.33; bigrams: "the cat", "on the", "the mat" -> 3 of 5 -> 60
    assert scores["rouge1"] == pytest.approx(500 / 6)
    assert scores["rouge2"] == pytest.approx(60.0)
    # LCS "the cat on the mat" = 5 of 6
    assert scores["rougeL"] == pytest.approx(500 / 6)


def test_rouge_l_is_summary_level_over_sentences():
    """ROUGE-1.5.5's ROUGE-L is the union LCS over sentences: sentence order does not matter."""
    one = rouge_python_per_example(["b c . a b ."], ["a b . b c ."], tokenize=False)["rougeL"][0]
    assert one == pytest.approx(100.0)


def _run_script_by_hand(tmp_path) -> str:
    (tmp_path / "sys").mkdir()
    (tmp_path / "mod").mkdir()
    evals = []
    for i, (hyp, ref) in enumerate(zip(HYP_SENTENCES, REF_SENTENCES)):
        (tmp_path / "sys" / f"s.{i}.txt").write_text("\n".join(hyp) + "\n")
        (tmp_path / "mod" / f"m.A.{i}.txt").write_text("\n".join(ref) + "\n")
        evals.append(f'<EVAL ID="{i + 1}"><PEER-ROOT>{tmp_path}/sys</PEER-ROOT><MODEL-ROOT>{tmp_path}/mod</MODEL-ROOT>'
                     f'<INPUT-FORMAT TYPE="SPL"></INPUT-FORMAT><PEERS><P ID="1">s.{i}.txt</P></PEERS>'
                     f'<MODELS><M ID="A">m.A.{i}.txt</M></MODELS></EVAL>')
    (tmp_path / "config.xml").write_text('<ROUGE-EVAL version="1.5.5">\n' + "\n".join(evals) + "\n</ROUGE-EVAL>\n")
    home = rouge_home()
    cmd = ["perl", str(home / "ROUGE-1.5.5.pl"), "-e", str(home / "data"), "-c", "95", "-r", "1000", "-n", "2", "-a",
           str(tmp_path / "config.xml")]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


@needs_perl
def test_rouge_perl_matches_the_scripts_own_output_on_fixed_files(tmp_path):
    assert FILES2ROUGE_ARGS == ("-c", "95", "-r", "1000", "-n", "2", "-a")
    output = _run_script_by_hand(tmp_path)
    own = {f"rouge{k}": 100 * float(v) for k, v in re.findall(r"^1 ROUGE-(1|2|L) Average_F: ([\d.]+)", output, re.M)}
    assert own == pytest.approx(RECORDED_PERL, abs=1e-9)
    pretokenized = rouge_perl([" ".join(s) for s in HYP_SENTENCES], [" ".join(s) for s in REF_SENTENCES], tokenize=False)
    assert pretokenized == pytest.approx(own, abs=1e-9)
    raw = rouge_perl(RAW_HYP, RAW_REF)  # our PTB-ish tokenizer yields exactly the fixed files
    assert raw == pytest.approx(own, abs=1e-9)
    assert rouge(RAW_HYP, RAW_REF)["implementation"].startswith("ROUGE-1.5.5.pl -c 95 -r 1000 -n 2 -a")


@needs_perl
def test_perl_and_rouge_score_agree():
    """Per example they agree to Perl's printed precision (1e-3 point). Corpus: Perl's Average_F is
    the mean over its 1,000 bootstrap resamples of the mean F, so it may differ from the plain mean
    by sampling noise, std(F) / sqrt(1000 N); the tolerance is 3 of those (0.2-0.6 point here)."""
    for hyp, ref in zip(RAW_HYP, RAW_REF):
        perl, python = rouge_perl([hyp], [ref]), rouge_python([hyp], [ref])
        assert perl == pytest.approx(python, abs=1e-3)
    hyps = RAW_HYP + ["The company said profits fell sharply in the third quarter.", "Rain is expected tomorrow."]
    refs = RAW_REF + ["Profits at the company fell in the third quarter, it said.", "Forecasters expect heavy rain."]
    perl, python = rouge_perl(hyps, refs), rouge_python(hyps, refs)
    per_example = rouge_python_per_example(hyps, refs)
    for key in ("rouge1", "rouge2", "rougeL"):
        tolerance = 3 * np.std(per_example[key]) / np.sqrt(1000 * len(hyps)) + 1e-3
        assert perl[key] == pytest.approx(python[key], abs=tolerance)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        rouge_python(["a", "b"], ["a"])
