"""defemb-corpus end to end: output contract, determinism, --limit, bad input."""
import json
import subprocess
import time

import numpy as np
import pytest

from fairseq_defemb.data.corpus_format import check_corpus_dictionary, load_split
from fairseq_defemb.data.vocabulary import load_model_dictionary
from preprocess.corpus import build as build_corpus
from fairseq_defemb.cli.corpus import main as cli_main
from preprocess.corpus.sources import DEFAULT_SOURCES
from tiny_models import make_tiny_checkpoint
from conftest import REPO, VENV_BIN
from test_corpus_alignment import GPT2, MINILM_VOCAB, gpt2_decode, write_gpt2_dict, write_wordpiece_dict
from test_corpus_alignment import sentencepiece_model  # noqa: F401  (module fixture: a sentencepiece model trained here)


@pytest.fixture(scope="module")
def wp_dict(tmp_path_factory):
    return write_wordpiece_dict(tmp_path_factory.mktemp("wp") / "dict.txt")


@pytest.fixture(scope="module")
def gpt2_dict(tmp_path_factory):
    return write_gpt2_dict(tmp_path_factory.mktemp("gpt2") / "dict.txt")


def wp_args(out, vocab, *extra):
    return ["--vocab", str(vocab), "--bpe", "wordpiece", "--wordpiece-vocab", str(MINILM_VOCAB), "--lowercase",
            "--out", str(out), "--no-progress", *extra]


def gpt2_args(out, vocab, *extra):
    return ["--vocab", str(vocab), "--bpe", "gpt2", "--gpt2-encoder-json", str(GPT2 / "encoder.json"),
            "--gpt2-vocab-bpe", str(GPT2 / "vocab.bpe"), "--out", str(out), "--no-progress", *extra]


def manual_tsv(path, n=300):
    path.write_text("".join(f"Word{i}x\tn.\tthe {i}th test word of a small manual list of words made up for this test\n" for i in range(n)))
    return path


def read_all(out, split):
    data = load_split(out, split)
    return [(data.prompts[i].tolist(), data.spans_of(i).tolist()) for i in range(len(data))]


def test_gpt2_corpus_contract(tmp_path, gpt2_dict):
    tsv = manual_tsv(tmp_path / "m.tsv", 50)
    out = tmp_path / "out"
    assert cli_main(gpt2_args(out, gpt2_dict, "--source", "manual,numbers", "--manual-tsv", str(tsv),
                              "--valid-size", "0.2", "--max-prompt-tokens", "40")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tsv", "out"]  # no temporary directory left
    assert (out / "dict.txt").read_bytes() == gpt2_dict.read_bytes()
    meta = check_corpus_dictionary(out)
    assert meta["sources"] == ["manual", "numbers"] and meta["tokenizer"]["bpe"] == "gpt2"
    assert meta["prompts_by_source"]["manual"] == 50 and meta["skipped"]["definition truncated"] > 0
    dictionary = load_model_dictionary(out / "dict.txt")
    from preprocess.corpus.tokenizers import GPT2Backend

    backend = GPT2Backend(dictionary, GPT2 / "encoder.json", GPT2 / "vocab.bpe")
    rows = read_all(out, "train") + read_all(out, "valid")
    assert len(rows) == meta["splits"]["train"] + meta["splits"]["valid"] == meta["prompts_kept"]
    grounded = set()
    for ids, spans in rows:
        assert ids[0] == dictionary.bos() and ids[-1] == dictionary.eos() and len(ids) <= 40
        words = {gpt2_decode(backend, ids[s:e]).strip().lower() for s, e in spans}
        assert len(words) == 1  # all spans of a prompt are variants of one headword
        assert gpt2_decode(backend, ids[1:-1]).startswith(" " + gpt2_decode(backend, ids[spans[0][0]:spans[0][1]]).strip())
        grounded.update(t for s, e in spans for t in ids[s:e])
    assert sorted(grounded) == [int(x) for x in (out / "grounded_ids.txt").read_text().split()]
    report = json.loads((out / "coverage.json").read_text())
    assert report["coverage"]["grounded"]["grounded"] == len(grounded)
    assert report["coverage"]["vocabulary_size"] == len(dictionary) - 5  # specials and <mask> excluded
    assert "| all |" in (out / "coverage.md").read_text()


def test_output_is_deterministic_and_independent_of_workers(tmp_path, wp_dict):
    tsv = manual_tsv(tmp_path / "m.tsv")
    outs = []
    for name, workers in (("a", 1), ("b", 2), ("c", 1)):
        out = tmp_path / name
        assert cli_main(wp_args(out, wp_dict, "--source", "manual,numbers", "--manual-tsv", str(tsv),
                                "--valid-size", "0.1", "--workers", str(workers))) == 0
        outs.append(out)
    for name in ("train.prompt.bin", "train.spans.bin", "valid.prompt.bin", "valid.spans.idx", "grounded_ids.txt"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes() == (outs[2] / name).read_bytes()
    train, valid = read_all(outs[0], "train"), read_all(outs[0], "valid")
    assert len(valid) == round(0.1 * (len(train) + len(valid))) and not {tuple(x[0]) for x in train} & {tuple(x[0]) for x in valid}
    other = tmp_path / "seed2"
    assert cli_main(wp_args(other, wp_dict, "--source", "manual,numbers", "--manual-tsv", str(tsv), "--valid-size", "0.1",
                            "--seed", "2")) == 0
    assert read_all(other, "valid") != valid and sorted(read_all(other, "train") + read_all(other, "valid")) == sorted(train + valid)


def test_valid_size_is_capped_so_train_is_never_empty(tmp_path, wp_dict):
    tsv = manual_tsv(tmp_path / "m.tsv", 5)
    out = tmp_path / "out"
    assert cli_main(wp_args(out, wp_dict, "--source", "manual", "--manual-tsv", str(tsv))) == 0  # default 10000
    assert check_corpus_dictionary(out)["splits"] == {"train": 1, "valid": 4}


def test_max_senses_per_word(tmp_path, wp_dict):
    tsv = tmp_path / "m.tsv"
    tsv.write_text("".join(f"bank\tn.\tsense number {i}\n" for i in range(5)) + "river\tn.\ta stream\n")
    out = tmp_path / "out"
    assert cli_main(wp_args(out, wp_dict, "--source", "manual", "--manual-tsv", str(tsv), "--max-senses-per-word", "2",
                            "--valid-size", "0")) == 0
    assert len(read_all(out, "train")) == 3


def test_multi_word_headwords_are_skipped_and_counted(tmp_path, gpt2_dict):
    """a phrase is not a target (its spans would teach " the" and " bucket")."""
    tsv = tmp_path / "m.tsv"
    tsv.write_text("kick the bucket\tv.\tto die\nNew\u00a0York\tn.\ta city\nbucket\tn.\ta pail\n"
                   "well-known\tadj.\twidely known\n")
    out = tmp_path / "out"
    assert cli_main(gpt2_args(out, gpt2_dict, "--source", "manual", "--manual-tsv", str(tsv), "--valid-size", "0")) == 0
    report = json.loads((out / "coverage.json").read_text())
    assert report["skipped"]["multi-word headword (not a target)"] == {"count": 2, "first": ["kick the bucket",
                                                                                             "New\u00a0York"]}
    assert report["prompts_built"] == 2  # bucket, well-known
    d = load_model_dictionary(out / "dict.txt")
    bpe_id = json.loads((GPT2 / "encoder.json").read_text())
    grounded = {int(x) for x in (out / "grounded_ids.txt").read_text().split()}
    assert d.index(str(bpe_id["\u0120bucket"])) in grounded
    assert not {d.index(str(bpe_id[t])) for t in ("\u0120the", "\u0120kick", "\u0120York")} & grounded


def test_authors_manual_file_targets_exactly_the_ids_it_names(tmp_path, gpt2_dict, capsys):
    """A sample in the layout of the paper authors' manual_definitions.txt for BART (header, GPT-2
    symbols with and without the leading-space mark, a token with two senses, an all-empty row, a
    token column of two words, an index that names another token) passed as it is."""
    enc = json.loads((GPT2 / "encoder.json").read_text())
    tsv = tmp_path / "manual_definitions.txt"
    tsv.write_text("index\ttoken\tpos\tdefinition\n"
                   f"{enc['ĠiTunes']}\tĠiTunes\tproper noun\ta media player and media library\n"
                   f"{enc['taboola']}\ttaboola\tproper noun\tan advertising company\n"
                   f"{enc['mA']}\tmA\tsymbol\t(metrology) symbol for milliampere\n"
                   f"{enc['mA']}\tmA\tsymbol\t(biochemistry) methyladenine\n"
                   "\t\t\t\n"
                   f"{enc['ulkan']}\tulkan Ulkan\tproper noun\tan urban locality in Russia\n"
                   f"{enc['GHz']}\tĠGHz\tsymbol\t(metrology) symbol for gigahertz\n")
    out = tmp_path / "out"
    assert cli_main(gpt2_args(out, gpt2_dict, "--source", "manual", "--manual-tsv", str(tsv), "--valid-size", "0")) == 0
    d = load_model_dictionary(out / "dict.txt")
    named = [d.index(str(enc[t])) for t in ("ĠiTunes", "taboola", "mA", "mA", "ĠGHz")]
    rows = read_all(out, "train")
    assert all(len(spans) == 1 and spans[0][1] - spans[0][0] == 1 for _, spans in rows)  # one id, one span
    assert sorted(ids[spans[0][0]] for ids, spans in rows) == sorted(named)
    from preprocess.corpus.tokenizers import GPT2Backend

    backend = GPT2Backend(d, GPT2 / "encoder.json", GPT2 / "vocab.bpe")
    texts = {gpt2_decode(backend, ids[1:-1]) for ids, _ in rows}
    assert ' "taboola" (proper noun; lower case): an advertising company' in texts  # no leading space: attached
    assert " iTunes (proper noun; mixed case): a media player and media library" in texts
    report = json.loads((out / "coverage.json").read_text())
    assert report["skipped"] == {
        "empty row": {"count": 1, "first": [f"{tsv}:6"]},
        "symbol not in the vocabulary": {"count": 1, "first": [f"{tsv}:7"]},
        "index disagrees with the symbol's id (the symbol's id is used)": {"count": 1, "first": [f"{tsv}:8"]},
    }
    assert report["coverage"]["by_source"]["manual"]["grounded"] == len(set(named)) == 4
    assert [int(x) for x in (out / "grounded_ids.txt").read_text().split()] == sorted(set(named))
    printed = capsys.readouterr().out
    assert "| source: manual | 4 |" in printed and "empty row: 1" in printed, printed


def test_authors_manual_file_for_a_sentencepiece_vocabulary(tmp_path, sentencepiece_model):  # noqa: F811
    """The layout of the authors' T5 file: "\u2581" pieces, the sentencepiece model's ids as index."""
    import sentencepiece

    model, dict_path = sentencepiece_model
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    initial = next(p for p in pieces if p.startswith("\u2581") and p[1:].isalpha() and len(p) > 4)
    attached = next(p for p in pieces if p.isalpha() and len(p) > 2)
    tsv = tmp_path / "manual_definitions.txt"
    tsv.write_text("index\ttoken\tpos\tdefinition\n"
                   f"{sp.piece_to_id(initial)}\t{initial} \tnoun\t a word of the test\n"
                   f"{sp.piece_to_id(attached)}\t{attached}\tproper noun\tthe ending part of a name\n"
                   f"{sp.piece_to_id(attached)}\t{attached}\tnoun\tits second sense\n"
                   "\t\t\t\n24741\t\u2581esential\tadjective\tis the mis-spelled word of essential\n")
    out = tmp_path / "out"
    assert cli_main(["--vocab", str(dict_path), "--bpe", "sentencepiece", "--sentencepiece-model", str(model),
                     "--source", "manual", "--manual-tsv", str(tsv), "--valid-size", "0", "--out", str(out),
                     "--no-progress"]) == 0
    d = load_model_dictionary(out / "dict.txt")
    rows = read_all(out, "train")
    assert all(len(spans) == 1 and spans[0][1] - spans[0][0] == 1 for _, spans in rows)
    assert sorted(ids[spans[0][0]] for ids, spans in rows) == sorted(d.index(p) for p in (initial, attached, attached))
    report = json.loads((out / "coverage.json").read_text())
    assert {k: v["first"] for k, v in report["skipped"].items()} == {"empty row": [f"{tsv}:5"],
                                                                    "symbol not in the vocabulary": [f"{tsv}:6"]}
    assert report["coverage"]["by_source"]["manual"]["grounded"] == 2


def test_limit_favours_rare_tokens(tmp_path, wp_dict):
    limited, full = tmp_path / "lim", tmp_path / "full"
    assert cli_main(wp_args(limited, wp_dict, "--source", "numbers", "--limit", "200", "--valid-size", "0")) == 0
    assert cli_main(wp_args(full, wp_dict, "--source", "numbers", "--valid-size", "0")) == 0

    def mean_rarest(path):
        rows = read_all(path, "train")
        return sum(max(ids[s:e][-1] for s, e in spans) for ids, spans in rows) / len(rows), len(rows)

    (lim_mean, n), (full_mean, _) = mean_rarest(limited), mean_rarest(full)
    assert n == 200 and lim_mean > 1.1 * full_mean
    report = json.loads((limited / "coverage.json").read_text())
    assert report["prompts_kept"] == 200 and report["coverage_kept"]["grounded"]["grounded"] < report["coverage"]["grounded"]["grounded"]
    assert "--limit" in (limited / "coverage.md").read_text()
    # MiniLM's [unusedN] slots are counted apart, not listed among the ungrounded tokens.
    assert report["coverage"]["ungrounded_unused_slots"] > 900
    assert not any(t["token"].startswith("[unused") for t in report["coverage"]["most_frequent_ungrounded"])


def test_reports_record_licences_shapes_and_sample_prompts(tmp_path, gpt2_dict):
    out = tmp_path / "out"
    assert cli_main(gpt2_args(out, gpt2_dict, "--source", "numbers,symbols", "--valid-size", "0.1")) == 0
    meta = check_corpus_dictionary(out)
    assert list(meta["licences"]) == ["numbers", "symbols"] and "Unicode" in meta["licences"]["symbols"]["licence"]
    report = json.loads((out / "coverage.json").read_text())
    assert report["licences"] == meta["licences"]
    assert [len(v) for v in report["sample_prompts"].values()] == [10, 10]
    assert all(t.startswith("<s> ") and t.endswith("</s>") for v in report["sample_prompts"].values() for t in v)
    cov = report["coverage"]
    shapes = cov["ungrounded_by_shape"]
    assert sum(v["tokens"] for v in shapes.values()) + cov["grounded"]["grounded"] == cov["vocabulary_size"]
    assert shapes["partial UTF-8 bytes"]["tokens"] > 100 and "lower-case, word-initial" in shapes
    assert cov["by_source"]["symbols"]["grounded"] > 900 and cov["grounded_only_generic"]["grounded"] == 0
    md = (out / "coverage.md").read_text()
    for needle in ("Ungrounded tokens by shape", "Sources and their licences", "| symbols | Unicode character names",
                   "Random prompts of `symbols`:", "Random prompts of `numbers`:", ": the number "):
        assert needle in md, needle


# -- bad input: a clear error, exit 2, nothing left behind ------------------------

def fails(capsys, tmp_path, argv, *needles):
    before = set(tmp_path.iterdir())
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    assert set(tmp_path.iterdir()) == before  # no output dir, no temporary dir
    return err


def test_gpt2_dict_that_does_not_match_the_bpe_files(tmp_path, wp_dict, capsys):
    fails(capsys, tmp_path, gpt2_args(tmp_path / "o", wp_dict), "is not a GPT-2 BPE id", f"{wp_dict}:1")


def test_wordpiece_vocab_that_does_not_match(tmp_path, gpt2_dict, capsys):
    fails(capsys, tmp_path, wp_args(tmp_path / "o", gpt2_dict), "not WordPiece pieces")


def test_malformed_dict_txt_names_the_line(tmp_path, capsys):
    bad = tmp_path / "dict.txt"
    bad.write_text("10 5\n11 4\nno-count-here\n")
    fails(capsys, tmp_path, gpt2_args(tmp_path / "o", bad), f"{bad}:3", "not a fairseq dict.txt")
    fails(capsys, tmp_path, gpt2_args(tmp_path / "o", tmp_path / "missing.txt"), "missing.txt: not found")


def test_sources_that_cannot_be_read(tmp_path, wp_dict, capsys):
    fails(capsys, tmp_path, wp_args(tmp_path / "o", wp_dict, "--source", "wiktionary"), "--wiktionary-jsonl")
    fails(capsys, tmp_path, wp_args(tmp_path / "o", wp_dict, "--source", "gcide,webster"), "webster: unknown")
    fails(capsys, tmp_path, wp_args(tmp_path / "o", wp_dict, "--source", "inflections"), "add one of gcide")
    fails(capsys, tmp_path, wp_args(tmp_path / "o", wp_dict, "--source", "manual", "--manual-tsv", str(tmp_path / "x.tsv")),
          "x.tsv: not found")
    junk = tmp_path / "dump.jsonl"
    junk.write_bytes(b"\x1f\x8b\x08 binary\nnot json either\n")
    fails(capsys, tmp_path, wp_args(tmp_path / "o", wp_dict, "--source", "wiktionary,numbers", "--wiktionary-jsonl", str(junk)),
          f"{junk}: no usable record", f"{junk}:1", f"{junk}:2", "kaikki")
    # the authors' file of another model's vocabulary (T5's sentencepiece pieces for a WordPiece model)
    t5 = tmp_path / "manual_definitions.txt"
    t5.write_text("index\ttoken\tpos\tdefinition\n13664\t\u2581Mihai\tproper noun\ta Romanian given name\n"
                  "27800\t\u2581Cristina\tproper noun\ta given name\n")
    fails(capsys, tmp_path, wp_args(tmp_path / "o", wp_dict, "--source", "manual,numbers", "--manual-tsv", str(t5)),
          f"{t5}: no usable record", f"symbol not in the vocabulary: {t5}:2, {t5}:3")


def test_nothing_buildable(tmp_path, wp_dict, capsys):
    tsv = tmp_path / "m.tsv"
    tsv.write_text("\u2603\u2603\tn.\ta snowman pair\n")  # not in MiniLM's vocab: every variant is <unk>
    fails(capsys, tmp_path, wp_args(tmp_path / "o", wp_dict, "--source", "manual", "--manual-tsv", str(tsv)),
          "no prompt could be built")


def test_existing_output_is_kept_and_failures_leave_nothing(tmp_path, wp_dict, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    fails(capsys, tmp_path, wp_args(out, wp_dict, "--source", "numbers"), "exists")
    assert (out / "keep.txt").read_text() == "mine"

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(build_corpus.CorpusWriter, "finalize", crash)
    assert cli_main(wp_args(out, wp_dict, "--source", "numbers", "--overwrite")) == 2  # an error, not a traceback
    assert "defemb-corpus: error: disk full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "keep.txt").read_text() == "mine"


# -- full builds from every embedded source (docs/corpus.md's numbers) ---------------

@pytest.mark.slow
@pytest.mark.parametrize("bpe", ["gpt2", "wordpiece"])
def test_full_embedded_build(tmp_path, bpe, gpt2_dict, wp_dict, capsys):
    out = tmp_path / "full"
    argv = gpt2_args(out, gpt2_dict) if bpe == "gpt2" else wp_args(out, wp_dict)
    start = time.perf_counter()
    assert cli_main(argv + ["--source", ",".join(DEFAULT_SOURCES), "--workers", "2"]) == 0
    seconds = time.perf_counter() - start
    report = json.loads((out / "coverage.json").read_text())
    cov = report["coverage"]
    with capsys.disabled():
        print(f"\n[{bpe}] {seconds:.1f} s, {report['prompts_built']:,} prompts, grounded {cov['grounded']}, "
              f"groups { {g: v['share'] for g, v in cov['by_frequency_group'].items()} }, by source "
              f"{ {s: v['share'] for s, v in cov['by_source'].items()} }, skipped "
              f"{ {k: v['count'] for k, v in report['skipped'].items()} }")
    assert report["prompts_built"] > 300_000 and report["splits"]["valid"] == 10_000
    assert set(report["prompts_by_source"]) == set(DEFAULT_SOURCES) and all(report["prompts_by_source"].values())
    assert len(cov["most_frequent_ungrounded"]) == 50
    # the coverage sources' targets
    if bpe == "gpt2":
        assert cov["grounded"]["share"] >= 0.85 and cov["by_frequency_group"]["rare"]["share"] >= 0.75
    else:
        unused = cov["ungrounded_unused_slots"]
        assert cov["grounded"]["grounded"] / (cov["vocabulary_size"] - unused) >= 0.80
    if bpe == "gpt2":
        # ...and the full 50k-vocabulary corpus trains: a tiny BART, stock fairseq-train.
        checkpoint = make_tiny_checkpoint(tmp_path / "bart", "bart", dict_path=gpt2_dict)
        train = subprocess.run([
            str(VENV_BIN / "fairseq-train"), str(out), "--user-dir", str(REPO / "fairseq_defemb"),
            "--task", "definition_cloze", "--criterion", "mimic_mse", "--arch", "defemb_bart",
            "--pretrained-checkpoint", str(checkpoint), "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1024",
            "--max-update", "2", "--cpu", "--num-workers", "0", "--save-dir", str(tmp_path / "ckpt"),
            "--required-batch-size-multiple", "1", "--max-positions", "64", "--skip-invalid-size-inputs-valid-test",
            "--disable-validation", "--no-save",
        ], capture_output=True, text=True)
        assert train.returncode == 0, train.stderr[-3000:]
        assert "num_updates 2" in train.stdout + train.stderr


def test_report_counts_prompts_that_show_their_headword_outside_the_variants(tmp_path, gpt2_dict):
    from fairseq_defemb.data.headword import echo_positions

    tsv = tmp_path / "m.tsv"
    tsv.write_text("zebra\tn.\tan animal like a horse, a zebra has stripes\n"
                   "okapi\tn.\tan animal of the forest, kin of the giraffe\n"
                   "quagga\tn.\ta quagga was a kind of zebra\n")
    out = tmp_path / "out"
    report = build_corpus.build_corpus(gpt2_dict, out, bpe="gpt2", sources=["manual"], manual_tsv=str(tsv),
                                       gpt2_encoder_json=str(GPT2 / "encoder.json"),
                                       gpt2_vocab_bpe=str(GPT2 / "vocab.bpe"), valid_size=0, progress=False)
    echoes = report["headword_ids_outside_spans"]
    prompts = read_all(out, "train")
    with_echo = [len(echo_positions(np.array(ids), np.array(spans))) > 0 for ids, spans in prompts]
    assert echoes == {"prompts": sum(with_echo), "of": 3, "share": round(sum(with_echo) / 3, 4)}
    # zebra's and quagga's definitions name them; okapi's does not
    assert echoes["prompts"] >= 2 and not all(with_echo)
    assert json.loads((out / "coverage.json").read_text())["headword_ids_outside_spans"] == echoes


def test_definition_only_copies(tmp_path, wp_dict):
    """Each train/valid prompt with other variants gets a copy holding only its headword as written,
    then the header and definition, exactly as the held-out split's definition-only prompts read."""
    tsv = manual_tsv(tmp_path / "m.tsv", 40)
    plain, copies = tmp_path / "plain", tmp_path / "copies"
    common = ("--source", "manual", "--manual-tsv", str(tsv), "--valid-size", "0.2")
    assert cli_main(wp_args(plain, wp_dict, *common)) == 0
    assert cli_main(wp_args(copies, wp_dict, *common, "--definition-only-copies")) == 0
    counts = check_corpus_dictionary(copies)["definition_only_copies"]
    for split in ("train", "valid"):
        original, written = read_all(plain, split), read_all(copies, split)
        assert written[:len(original)] == original  # the paper's prompts first, unchanged
        several = [(ids, spans) for ids, spans in original if len(spans) > 1]
        assert several and len(written) == len(original) + len(several) and counts[split] == len(several)
        without = load_split(copies, split, definition_only_copies=False)
        assert [(without.prompts[i].tolist(), without.spans_of(i).tolist()) for i in range(len(without))] == original
        tokens, starts = without.prompt_tokens()
        assert len(starts) == len(original) + 1 and len(tokens) == sum(len(ids) for ids, _ in original)
        assert len(without.span_bounds()) == sum(len(spans) for _, spans in original)
        # definition_cloze trains on both, or (--skip-definition-only-copies, the paper's prompts) on the first
        from fairseq_defemb.tasks.definition_cloze import DefinitionClozeConfig, DefinitionClozeTask

        for skip, expected in ((False, len(written)), (True, len(original))):
            task = DefinitionClozeTask.setup_task(DefinitionClozeConfig(data=str(copies), skip_definition_only_copies=skip))
            task.load_dataset(split)
            task.datasets[split].set_corruption("bert")
            assert len(task.datasets[split]) == expected and len(task.datasets[split].ordered_indices()) == expected
        for (ids, spans), (copy, copy_spans) in zip(several, written[len(original):]):
            (s, e), (_, last) = spans[0], spans[-1]
            header = last + 1  # the attached variant is quoted: its closing quote, then the header
            assert copy == [ids[0], *ids[s:e], *ids[header:]] and copy_spans == [[1, 1 + e - s]]
