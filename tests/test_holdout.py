"""Token-level hold-out: which tokens are held out, where their prompts go, and that
definition_cloze never trains or validates on a held-out target."""
import numpy as np
import pytest
import torch

from fairseq_defemb.analysis.frequency_groups import frequency_groups
from preprocess.corpus.holdout import (DEFINITION_ONLY_SPLIT, HELDOUT_SPLIT, HoldoutError, definition_only,
                                   holdout_candidates, holdout_metadata, holdout_splits, read_holdout_ids,
                                   sample_holdout, write_holdout)
from preprocess.corpus.prompts import Prompt
from fairseq_defemb.data.corpus_format import CorpusWriter, load_split, write_metadata
from fairseq_defemb.data.vocabulary import load_model_dictionary
from tiny_models import write_dict
from test_definition_cloze import build


@pytest.fixture(scope="module")
def dictionary(tmp_path_factory):
    return load_model_dictionary(write_dict(tmp_path_factory.mktemp("d") / "dict.txt"))


def make_prompt(d, variants: list[str], definition: str) -> Prompt:
    """``<s> v1 , v2 ( n ) : definition </s>`` with each variant's words one span."""
    ids, spans = [d.bos()], []
    for i, v in enumerate(variants):
        if i:
            ids.append(d.index("a"))  # stands in for the comma
        words = [d.index(w) for w in v.split()]
        spans.append((len(ids), len(ids) + len(words)))
        ids += words
    header = len(ids)
    ids += [d.index("is")]
    start = len(ids)
    ids += [d.index(w) for w in definition.split()] + [d.eos()]
    return Prompt(np.asarray(ids, dtype=np.int32), spans, "test", header, start)


def prompts_for(d):
    return [
        make_prompt(d, ["word", "word number"], "a kind of thing"),   # 'word' defined on its own
        make_prompt(d, ["one two"], "number of the word"),            # 'one' only a piece; 'word' in the definition
        make_prompt(d, ["the"], "the first word"),                    # frequent, own prompt
        make_prompt(d, ["dugong"], "a sea animal"),                   # rare (last 20% of the dictionary)
        make_prompt(d, ["fish", "word"], "an animal of the sea"),     # 'word' as another variant
    ]


def test_candidates_are_frequent_or_medium_headwords_of_their_own(dictionary):
    d = dictionary
    groups = frequency_groups(len(d), d.nspecial, d.index("<mask>"))
    assert d.index("dugong") in groups["rare"]
    assert holdout_candidates(prompts_for(d), d).tolist() == sorted([d.index("word"), d.index("the"), d.index("fish")])
    chosen = sample_holdout(prompts_for(d), d, 2, seed=3)
    assert len(chosen) == 2 and set(chosen) <= {d.index("word"), d.index("the"), d.index("fish")}
    assert sample_holdout(prompts_for(d), d, 2, seed=3).tolist() == chosen.tolist()  # seeded
    with pytest.raises(HoldoutError, match="--holdout 4: only 3 tokens"):
        sample_holdout(prompts_for(d), d, 4, seed=3)


def test_prompts_with_a_held_out_span_go_to_the_heldout_split(dictionary):
    d = dictionary
    prompts = prompts_for(d)
    holdout = np.asarray([d.index("word")])
    kept, splits = holdout_splits(prompts, holdout)
    # prompt 1 keeps 'word' in its definition: an input, never a target
    assert [p.ids.tolist() for p in kept] == [prompts[i].ids.tolist() for i in (1, 2, 3)]
    assert [p.ids.tolist() for p in splits[HELDOUT_SPLIT]] == [prompts[i].ids.tolist() for i in (0, 4)]
    # definition only: <s>, the held-out variant, header and definition; one per variant holding it
    defonly = splits[DEFINITION_ONLY_SPLIT]
    assert [(p.ids.tolist(), p.spans) for p in defonly] == [
        ([d.bos(), d.index("word"), d.index("is"), *[d.index(w) for w in "a kind of thing".split()], d.eos()], [(1, 2)]),
        ([d.bos(), d.index("word"), d.index("number"), d.index("is"), *[d.index(w) for w in "a kind of thing".split()],
          d.eos()], [(1, 3)]),
        ([d.bos(), d.index("word"), d.index("is"), *[d.index(w) for w in "an animal of the sea".split()], d.eos()],
         [(1, 2)]),
    ]
    assert [p.definition_start for p in defonly] == [3, 4, 3]
    assert definition_only(prompts[2], holdout) == []


def test_holdout_ids_file_errors_name_the_line(tmp_path, dictionary):
    d = dictionary
    prompts = prompts_for(d)
    path = tmp_path / "ids.txt"
    path.write_text(f"# held out\n{d.index('word')}\n\n{d.index('one')}\n")
    assert read_holdout_ids(path, d, prompts).tolist() == sorted([d.index("word"), d.index("one")])
    for text, needle in (("word\n", ":1: 'word' is not a token id"),
                         (f"{d.index('the')}\n{len(d) + 3}\n", f":2: id {len(d) + 3} is not a symbol"),
                         (f"{d.index('<mask>')}\n", ":1: id"),
                         ("2\n", ":1: id 2 is not a symbol"),
                         (f"{d.index('cat')}\n", f":1: id {d.index('cat')} ('cat') is in no headword variant"),
                         ("# nothing\n", "no id in the file")):
        path.write_text(text)
        with pytest.raises(HoldoutError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            read_holdout_ids(path, d, prompts)


def write_corpus(tmp_path, d, dict_path, holdout_words):
    """A corpus as defemb-corpus --holdout writes it (splits + holdout files)."""
    prompts = prompts_for(d) * 3
    holdout = np.asarray(sorted(d.index(w) for w in holdout_words))
    kept, held = holdout_splits(prompts, holdout)
    splits = {"train": kept, "valid": kept[:2], **held}
    (tmp_path / "dict.txt").write_bytes(dict_path.read_bytes())
    for name, rows in splits.items():
        writer = CorpusWriter(tmp_path, name, len(d))
        for p in rows:
            writer.add(p.ids, p.spans)
        writer.finalize()
    write_metadata(tmp_path, tmp_path / "dict.txt", {k: len(v) for k, v in splits.items()})
    write_holdout(tmp_path, holdout_metadata(holdout, d, held, "test", 1))
    return holdout


def test_definition_cloze_never_targets_a_held_out_token(tmp_path, tiny_dir):
    dict_path = tiny_dir / "roberta" / "dict.txt"
    d = load_model_dictionary(dict_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    holdout = write_corpus(corpus, d, dict_path, ["word", "the"])
    link = tmp_path / "tiny"
    link.mkdir()
    (link / "roberta").symlink_to(tiny_dir / "roberta")
    (link / "corpus").symlink_to(corpus)
    task, _, _ = build(link, "roberta")
    for split in ("train", "valid"):
        ds = task.datasets[split]
        for epoch in (1, 2, 3):
            ds.set_epoch(epoch)
            targets = torch.cat([ds[i]["target"] for i in range(len(ds))])
            assert not np.isin(targets.numpy(), holdout).any()
    with pytest.raises(ValueError, match="for defemb-predict only"):
        task.load_dataset(HELDOUT_SPLIT)
    # prediction on the held-out split: every held-out id is hidden, not only the position read
    ds = task.build_cloze_dataset(HELDOUT_SPLIT, predict=True)
    assert len(ds) > 0
    for i in range(len(ds)):
        item = ds[i]
        assert not np.isin(item["source"].numpy(), holdout).any()
        assert item["source"][item["positions"]].item() == task.mask_idx
    # a training split that holds a held-out target (an edited corpus) is refused
    (corpus / "holdout.json").write_text((corpus / "holdout.json").read_text().replace(
        f'"ids": [\n  {holdout[0]}', f'"ids": [\n  {d.index("one")},\n  {holdout[0]}'))
    with pytest.raises(ValueError, match="held-out token"):
        build(link, "roberta")


def test_hidden_ids_reach_the_bart_decoder_input_too(tmp_path, tiny_dir):
    dict_path = tiny_dir / "roberta" / "dict.txt"
    d = load_model_dictionary(dict_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    holdout = write_corpus(corpus, d, dict_path, ["word"])
    link = tmp_path / "tiny"
    link.mkdir()
    (link / "bart").symlink_to(tiny_dir / "bart")
    (link / "corpus").symlink_to(corpus)
    task, _, _ = build(link, "bart")
    ds = task.build_cloze_dataset(HELDOUT_SPLIT, predict=True)
    split = load_split(corpus, HELDOUT_SPLIT)
    for i in range(len(ds)):
        item = ds[i]
        assert not np.isin(item["source"].numpy(), holdout).any()
        assert not np.isin(item["prev_output_tokens"].numpy(), holdout).any()
        assert np.isin(split.prompts[i].numpy(), holdout).any()


def test_corpus_cli_holds_out_and_refuses_bad_requests(tmp_path, capsys):
    from fairseq_defemb.cli.corpus import main as corpus_main
    from test_corpus_alignment import write_wordpiece_dict
    from test_corpus_build import wp_args

    vocab = write_wordpiece_dict(tmp_path / "dict.txt")
    out = tmp_path / "out"
    assert corpus_main(wp_args(out, vocab, "--source", "numbers", "--valid-size", "5", "--holdout", "10")) == 0
    assert "held out 10 tokens" in capsys.readouterr().out
    holdout = np.array([int(x) for x in (out / "holdout_ids.txt").read_text().split()])
    assert len(holdout) == 10
    d = load_model_dictionary(out / "dict.txt")
    groups = frequency_groups(len(d), d.nspecial, d.index("<mask>"))
    assert np.isin(holdout, np.concatenate([groups["frequent"], groups["medium"]])).all()
    spans = {}
    for split in ("train", "valid", HELDOUT_SPLIT, DEFINITION_ONLY_SPLIT):
        data = load_split(out, split)
        spans[split] = {int(t) for i in range(len(data)) for s, e in data.spans_of(i).tolist()
                        for t in data.prompts[i][s:e].tolist()}
    assert not spans["train"] & set(holdout.tolist()) and not spans["valid"] & set(holdout.tolist())
    assert set(holdout.tolist()) <= spans[HELDOUT_SPLIT] and set(holdout.tolist()) <= spans[DEFINITION_ONLY_SPLIT]
    for extra, needle in ((["--holdout", "100000"], "--holdout 100000: only"),
                          (["--holdout-ids", str(tmp_path / "ids.txt")], "ids.txt:2: 'x' is not a token id"),
                          (["--holdout", "3", "--holdout-ids", str(tmp_path / "ids.txt")], "pass one of them")):
        (tmp_path / "ids.txt").write_text(f"{holdout[0]}\nx\n")
        bad = tmp_path / "bad"
        assert corpus_main(wp_args(bad, vocab, "--source", "numbers", "--valid-size", "5", *extra)) == 2
        assert needle in capsys.readouterr().err
        assert not bad.exists()
