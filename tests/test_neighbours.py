"""Nearest neighbours, token surfaces and the numeric Max Difference (Section 6.3)."""
import json

import numpy as np
import pytest

from fairseq_defemb.analysis.neighbours import (looks_like_gpt2_ids, max_difference, nearest_neighbours, numeric_tokens,
                                       token_surfaces)


def test_max_difference_hand_worked():
    # values 1, 2, 3, 100 on a line; the 3 nearest of each = the other three
    E = np.array([[0.0], [1.0], [2.0], [50.0]])
    # gaps: 1 -> max(1, 2, 99) = 99; 2 -> 98; 3 -> 97; 100 -> 99; mean 98.25
    assert max_difference(E, np.arange(4), np.array([1.0, 2.0, 3.0, 100.0])) == pytest.approx(98.25)
    E5 = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])
    values5 = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    # 10: nn 20,30,40 -> 30; 20: 10,30,40 -> 20; 30: 20,40,10 -> 20; 40: 30,20,10 -> 30; 50: 40,30,20 -> 30
    assert max_difference(E5, np.arange(5), values5) == pytest.approx(26.0)


def test_max_difference_uses_only_numeric_rows_and_keeps_duplicates():
    # Row 1 is a non-numeric token sitting right next to "10"; it must not count as a neighbour.
    E = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [3.1, 0.0]])
    ids = np.array([0, 2, 3, 4, 5])
    values = np.array([10.0, 20.0, 30.0, 40.0, 40.0])  # "40" and " 40": same value, both kept
    # 10: 20,30,40 -> 30; 20: 30,10,40 -> 20; 30: 40,40',20 -> 10; 40: 40',30,20 -> 20; 40': 40,30,20 -> 20
    assert max_difference(E, ids, values) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        max_difference(E, ids[:3], values[:3])


def test_nearest_neighbours_cosine_vs_euclidean():
    E = np.array([[1.0, 0.0], [10.0, 0.5], [0.9, 0.9], [0.0, 1.0], [5.0, 6.0]])
    cosine = [i for i, _ in nearest_neighbours(E, 0, k=2, metric="cosine")]
    euclid = [i for i, _ in nearest_neighbours(E, 0, k=2, metric="euclidean")]
    assert cosine == [1, 2] and euclid == [2, 3]
    assert [i for i, _ in nearest_neighbours(E, 0, k=2, metric="cosine", exclude={1})] == [2, 4]
    with pytest.raises(ValueError):
        nearest_neighbours(E, 0, metric="manhattan")


class FakeDictionary:
    nspecial = 4

    def __init__(self, symbols):
        self.symbols = ["<s>", "<pad>", "</s>", "<unk>", *symbols]


def test_surfaces_and_numeric_tokens_for_wordpiece_and_sentencepiece():
    d = FakeDictionary(["##12", "\u258107", "cat", "1,000", "\u00bd", "3"])
    surfaces = token_surfaces(d)
    assert surfaces[4:] == ["12", "07", "cat", "1,000", "\u00bd", "3"]
    ids, values = numeric_tokens(surfaces, 4)
    assert ids.tolist() == [4, 5, 9] and values.tolist() == [12.0, 7.0, 3.0]  # ASCII digits only


def test_gpt2_ids_decoded_with_encoder_json(tmp_path):
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    b2u = bytes_to_unicode()
    encoder = {"2": 17, b2u[ord(" ")] + "2": 362, "cat": 9246, b2u[ord(" ")] + "1999": 7358}
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    d = FakeDictionary(["362", "9246", "17", "7358"] + [str(1000 + i) for i in range(60)])
    assert looks_like_gpt2_ids(d) and not looks_like_gpt2_ids(FakeDictionary(["cat", "dog", "2"] * 30))
    surfaces = token_surfaces(d, tmp_path / "encoder.json")
    assert surfaces[4:8] == ["2", "cat", "2", "1999"]  # leading-space marker removed
    ids, values = numeric_tokens(surfaces[:8], 4)
    assert ids.tolist() == [4, 6, 7] and values.tolist() == [2.0, 2.0, 1999.0]
