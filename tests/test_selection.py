"""Which rows surgery replaces (paper Section 5.3) and which tokens the task data holds."""
import json

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary, indexed_dataset

from conftest import REPO
from fairseq_defemb.surgery.selection import select_rows, special_ids, task_token_ids
from fairseq_defemb.data.vocabulary import load_model_dictionary
from tiny_models import write_dict


def hand_dictionary() -> Dictionary:
    d = Dictionary()  # ids 0..3: <s> <pad> </s> <unk>
    for w in "a b c d e f g h i j".split():  # ids 4..13, most to least frequent
        d.add_symbol(w)
    d.add_symbol("madeupword0000")  # id 14: fairseq's filler, never selected
    d.add_symbol("<mask>")  # id 15, never selected
    return d


def test_selection_hand_worked():
    d = hand_dictionary()
    ids = {w: d.index(w) for w in "a b c d e f g h i j".split()}
    assert special_ids(d) == {0, 1, 2, 3, 14, 15}
    # V_task in frequency order: a c d f g i j (specials, filler and <mask> in the task are ignored)
    task = {ids[w] for w in "a c d f g i j".split()} | {0, 2, 3, 14, 15}
    predicted = {ids[w] for w in "c d f g j".split()} | {14, 15}
    # |V| = 10 symbols; alpha 40 -> k = min(floor(0.4 * 10), 7) = 4 -> requested f g i j (the last 4).
    s = select_rows(d, task, predicted, 40)
    assert (s.vocabulary, s.task_vocabulary, s.budget) == (10, 7, 4)
    assert s.requested == [ids[w] for w in "f g i j".split()]
    # i has no prediction: skipped, and it still uses the budget; d (predicted, just above the band) is NOT
    # pulled in to take its place.
    assert s.replaced == [ids[w] for w in "f g j".split()]
    assert s.without_definition == [ids["i"]]
    # alpha 35 -> floor(3.5) = 3 -> g i j
    assert select_rows(d, task, predicted, 35).replaced == [ids["g"], ids["j"]]
    # alpha 100: k capped by |V_task| = 7; the specials, filler and <mask> are never replaced
    full = select_rows(d, task, predicted, 100)
    assert full.budget == 7 and full.replaced == [ids[w] for w in "c d f g j".split()]
    assert full.without_definition == [ids["a"], ids["i"]]
    assert select_rows(d, task, predicted, 0).requested == []
    for bad in (-1, 100.5):
        with pytest.raises(ValueError, match="alpha"):
            select_rows(d, task, predicted, bad)


def test_budget_is_exact_for_paper_alphas():
    d = Dictionary()
    for i in range(100):
        d.add_symbol(f"w{i}")
    task = set(range(4, 104))
    for alpha, k in ((7, 7), (3, 3), (5, 5), (10, 10), (30, 30), (100, 100), (2.5, 2)):
        assert select_rows(d, task, task, alpha).budget == k, alpha


def _binarize(path, lines, d, builder_cls=indexed_dataset.MMapIndexedDatasetBuilder, **kw):
    builder = builder_cls(str(path) + ".bin", **kw)
    for line in lines:
        builder.add_item(torch.tensor([d.index(w) for w in line.split()] + [d.eos()], dtype=torch.int32))
    builder.finalize(str(path) + ".idx")


@pytest.fixture()
def model_dict(tmp_path):
    path = write_dict(tmp_path / "dict.txt", "the of cat dog emu yak gnu okapi".split())
    return path, load_model_dictionary(path)


def test_task_ids_from_the_chosen_splits_and_every_language(tmp_path, model_dict):
    """V_task from the fine-tuning split by default; 'all' only on request."""
    dict_path, d = model_dict
    data = tmp_path / "bin"
    data.mkdir()
    for side in ("source", "target"):
        (data / f"dict.{side}.txt").write_text(dict_path.read_text())
    _binarize(data / "train.source-target.source", ["the cat", "the dog"], d, dtype=np.uint16)
    _binarize(data / "train.source-target.target", ["cat"], d, dtype=np.uint16)
    _binarize(data / "train1.source-target.source", ["yak"], d, dtype=np.uint16)  # fairseq's 2nd training set
    _binarize(data / "valid.source-target.source", ["emu"], d, dtype=np.uint16)
    _binarize(data / "test.source-target.target", ["okapi"], d, dtype=np.uint16)
    ids = lambda words: {d.index(w) for w in words.split()} | {d.eos()}  # noqa: E731
    train = task_token_ids(data, d, dict_path)
    assert train.ids == ids("the cat dog yak") and train.splits == ("train",)
    assert train.files == [str(data / f"{name}.bin") for name in (
        "train.source-target.source", "train.source-target.target", "train1.source-target.source")]
    assert task_token_ids(data, d, dict_path, task_splits="train,valid".split(",")).ids == ids("the cat dog yak emu")
    everything = task_token_ids(data, d, dict_path, task_splits="all")
    assert everything.ids == ids("the cat dog yak emu okapi") and len(everything.files) == 5
    # the legacy (non-mmap) indexed format takes the per-item path and gives the same ids
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    _binarize(legacy / "train", ["the cat", "the dog", "emu okapi yak"], d, indexed_dataset.IndexedDatasetBuilder)
    assert task_token_ids(legacy, d, dict_path).ids == everything.ids
    # several directories (GLUE: input0 and input1)
    both = task_token_ids([legacy, data], d, dict_path)
    assert both.ids == everything.ids and both.files == [str(legacy / "train.bin")] + train.files


def test_task_splits_errors_name_what_is_there(tmp_path, model_dict):
    dict_path, d = model_dict
    data = tmp_path / "bin"
    data.mkdir()
    _binarize(data / "valid", ["the cat"], d, dtype=np.uint16)
    _binarize(data / "test", ["the dog"], d, dtype=np.uint16)
    with pytest.raises(ValueError, match=f"--task-data {data}: no train split \\(found test, valid\\).*--task-splits"):
        task_token_ids(data, d, dict_path)
    for bad in (["all", "train"], [""]):
        with pytest.raises(ValueError, match="all on its own"):
            task_token_ids(data, d, dict_path, task_splits=bad)
    assert task_token_ids(data, d, dict_path, task_splits=["valid"]).ids == {d.index("the"), d.index("cat"), d.eos()}


def test_task_data_errors(tmp_path, model_dict):
    dict_path, d = model_dict
    data = tmp_path / "bin"
    data.mkdir()
    _binarize(data / "train", ["the cat"], d, dtype=np.uint16)
    write_dict(data / "dict.txt", "of the cat dog emu yak gnu okapi".split())  # another order
    with pytest.raises(ValueError, match="binarized with another dictionary"):
        task_token_ids(data, d, dict_path)
    (data / "dict.txt").unlink()
    nested = tmp_path / "RTE-bin"
    (nested / "input0").mkdir(parents=True)
    _binarize(nested / "input0" / "train", ["the cat"], d, dtype=np.uint16)
    with pytest.raises(ValueError, match="input0"):
        task_token_ids(nested, d, dict_path)
    with pytest.raises(FileNotFoundError, match="nope"):
        task_token_ids(tmp_path / "nope", d, dict_path)
    small = Dictionary()
    with pytest.raises(ValueError, match="token id"):
        task_token_ids(data, small, dict_path)


def test_task_ids_from_raw_text_with_gpt2_bpe(tmp_path):
    gpt2 = REPO / ".cache" / "gpt2"
    n = len(json.loads((gpt2 / "encoder.json").read_text()))
    (tmp_path / "dict.txt").write_text("".join(f"{i} {n - i}\n" for i in range(n)))
    d = load_model_dictionary(tmp_path / "dict.txt")
    (tmp_path / "task.txt").write_text("The sediment settled.\n")
    task = task_token_ids(tmp_path / "task.txt", d, tmp_path / "dict.txt", str(gpt2 / "encoder.json"),
                          str(gpt2 / "vocab.bpe"))
    ids = task.ids
    assert task.files == [str(tmp_path / "task.txt")]  # raw text: the files given, whatever the splits
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    bpe_ids = get_encoder(str(gpt2 / "encoder.json"), str(gpt2 / "vocab.bpe")).encode("The sediment settled.")
    assert ids == {d.index(str(t)) for t in bpe_ids} and len(ids) == len(set(bpe_ids))
    with pytest.raises(ValueError, match="raw text needs --gpt2-encoder-json"):
        task_token_ids(tmp_path / "task.txt", d, tmp_path / "dict.txt")
