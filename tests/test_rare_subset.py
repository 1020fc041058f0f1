"""The rare-token test subset of Appendix B.2."""
import pytest
import torch

from fairseq_defemb.analysis.rare_subset import load_binarized, rare_subset, rare_subset_binarized

TARGETS = [
    [0, 5, 6, 45000, 2],                                    # 1 of 3 rare (specials ignored): kept
    [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 41000],  # 1/21 < 5%: dropped
    [5, 49999],                                              # 49999 never seen in training: dropped
    [5, 6],                                                  # nothing rare: dropped
    [5] * 19 + [40001],                                      # exactly 5%: kept
    [5, 40000],                                              # 40000 is not *above* the threshold: dropped
]
TRAIN = set(range(49000))


def test_rare_subset_on_token_ids():
    assert rare_subset(TARGETS, TRAIN, threshold=40000, min_fraction=0.05) == [0, 4]
    assert rare_subset(TARGETS, TRAIN, threshold=40000, min_fraction=0.3) == [0]
    assert rare_subset(TARGETS, TRAIN | {49999}, threshold=40000, min_fraction=0.05) == [0, 2, 4]
    # only tokens that DefinitionEMB can replace count as rare
    assert rare_subset(TARGETS, TRAIN, threshold=40000, min_fraction=0.05, replaceable={40001}) == [4]
    with pytest.raises(ValueError):
        rare_subset(TARGETS, TRAIN, min_fraction=5)


def _binarize(path, sequences):
    from fairseq.data import indexed_dataset

    builder = indexed_dataset.make_builder(f"{path}.bin", impl="mmap", vocab_size=50265)
    for sequence in sequences:
        builder.add_item(torch.IntTensor(sequence))
    builder.finalize(f"{path}.idx")


def test_rare_subset_on_a_binarized_fairseq_dataset(tmp_path):
    _binarize(tmp_path / "test.source-target.target", TARGETS)
    _binarize(tmp_path / "train.source-target.target", [list(range(0, 30000))])
    _binarize(tmp_path / "train.source-target.source", [list(range(30000, 49000))])
    assert load_binarized(str(tmp_path), "test.source-target.target")[1][-1] == 41000
    assert rare_subset_binarized(str(tmp_path)) == [0, 4]
    # tokens seen only in the articles do not count when only the summaries are the training set
    assert rare_subset_binarized(str(tmp_path), train_splits=["train.source-target.target"]) == []
    with pytest.raises(FileNotFoundError):
        load_binarized(str(tmp_path), "valid.source-target.target")
