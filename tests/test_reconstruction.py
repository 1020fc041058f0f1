"""defemb-analyze reconstruction: metrics and initialisers against hand computations."""
import json

import numpy as np
import pytest
import torch

from fairseq_defemb.analysis.reconstruction import (ReconstructionError, aggregate, definition_mean_init, mean_row_init,
                                            random_init, reconstruction_markdown, reconstruction_report, score_tokens,
                                            subword_init)
from preprocess.corpus.tokenizers import GPT2Backend, WordPieceBackend
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.data.vocabulary import dictionary_sha256, load_model_dictionary
from test_corpus_alignment import GPT2, MINILM_VOCAB, write_gpt2_dict, write_wordpiece_dict
from test_holdout import write_corpus

E = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])


def test_rank_cosine_and_distance_by_hand():
    predicted = np.array([[1.0, 0.2], [0.0, -1.0], [0.0, 0.0]])
    scores = score_tokens(predicted, np.array([2, 1, 0]), E)
    # token 2: cosines to the rows 0.981, 0.196, 0.832 (true), -0.981 -> only row 0 beats it: rank 2
    # token 1: the true row has the lowest cosine (-1): rank 4; the zero vector ties every row: rank 4
    assert scores.rank.tolist() == [2, 4, 4]
    assert scores.cosine == pytest.approx([1.2 / (np.sqrt(1.04) * np.sqrt(2)), -1.0, 0.0])
    assert scores.sq_distance == pytest.approx([0.64, 4.0, 1.0])
    summary = aggregate(scores, np.array([True, True, False]))
    assert summary == pytest.approx({"n": 2, "cosine": (1.2 / (np.sqrt(1.04) * np.sqrt(2)) - 1) / 2,
                                     "sq_distance": 2.32, "mrr": (1 / 2 + 1 / 4) / 2, "hits@1": 0.0, "hits@10": 1.0,
                                     "hits@100": 1.0, "median_rank": 3.0,
                                     "norm_ratio": (np.sqrt(1.04) / np.sqrt(2) + 1.0) / 2})
    assert aggregate(score_tokens(E[[3, 0]], np.array([3, 0]), E), np.array([True, True]))["mrr"] == 1.0


def test_initialisers_by_hand():
    ids = np.array([2, 1])
    assert mean_row_init(E, ids) == pytest.approx(np.array([[0.25, 0.5], [0.25, 0.5]]))
    draw = random_init(np.tile(E, (500, 1)), np.arange(4000), seed=5)
    assert draw.shape == (4000, 2) and draw.std() == pytest.approx(np.tile(E, (500, 1)).std(), rel=0.05)
    assert random_init(E, ids, seed=5) == pytest.approx(random_init(E, ids, seed=5))
    # definition mean: prompt = <s> span ... definition </s>; per prompt the mean of its definition's rows
    # (excluded ids dropped), then the mean over the token's prompts
    prompts = [np.array([9, 2, 7, 0, 3, 9]), np.array([9, 2, 1, 7, 0, 9]), np.array([9, 1, 7, 2, 9])]
    spans = [np.array([1, 2]), np.array([1, 3]), np.array([1, 2])]
    matrix = np.vstack([E, np.zeros((6, 2))])
    vectors, empty = definition_mean_init(matrix, ids, prompts, spans, [3, 4, 3], excluded={7, 9, 2})
    first = E[[0, 3]].mean(axis=0)          # prompt 0: definition rows 0 and 3
    second = E[0]                           # prompt 1: definition row 0
    assert vectors[0] == pytest.approx((first + second) / 2)
    assert vectors[1] == pytest.approx(second)  # prompt 2's definition is only the excluded id 2
    assert empty == 0
    vectors, empty = definition_mean_init(matrix, np.array([3]), prompts, spans, [3, 4, 3], excluded=set())
    assert empty == 1 and not vectors.any()
    vectors, empty = subword_init(E, ids, {2: [0, 1, 5], 1: []}.get, excluded={5})
    assert vectors[0] == pytest.approx([0.5, 0.5]) and not vectors[1].any() and empty == 1


def test_subword_split_without_the_token(tmp_path):
    wp = WordPieceBackend(load_model_dictionary(write_wordpiece_dict(tmp_path / "wp.txt")), MINILM_VOCAB)
    d = wp.dictionary
    assert [d[i] for i in wp.split_without(d.index("running"))] == ["run", "##ning"]
    assert [d[i] for i in wp.split_without(d.index("##ning"))] == ["##nin", "##g"]  # greedy longest match
    assert wp.split_without(d.index("a")) == []  # a single character has no other spelling
    gpt2 = GPT2Backend(load_model_dictionary(write_gpt2_dict(tmp_path / "g.txt")), GPT2 / "encoder.json", GPT2 / "vocab.bpe")
    for text in (" running", " sediment", "ing"):
        (token,) = gpt2.glue(text)
        pieces = gpt2.split_without(token)
        assert len(pieces) >= 2 and token not in pieces
        chars = "".join(gpt2.bpe.decoder[int(gpt2.dictionary[p])] for p in pieces)
        assert chars == gpt2.bpe.decoder[int(gpt2.dictionary[token])]


@pytest.fixture
def corpus(tmp_path, tiny_dir):
    dict_path = tiny_dir / "roberta" / "dict.txt"
    d = load_model_dictionary(dict_path)
    out = tmp_path / "corpus"
    out.mkdir()
    holdout = write_corpus(out, d, dict_path, ["word", "the", "fish"])
    matrix = np.random.default_rng(0).normal(size=(len(d), 8))
    return out, d, holdout, matrix


def save_prediction(path, ids, vectors, corpus_dir, size):
    PredictedEmbeddings(token_ids=torch.as_tensor(ids), embeddings=torch.as_tensor(vectors, dtype=torch.float32),
                        num_definitions=torch.ones(len(ids), dtype=torch.long), embedding_dim=vectors.shape[1],
                        dictionary_sha256=dictionary_sha256(corpus_dir / "dict.txt"), dictionary_size=size).save(path)
    return path


def test_report_ranks_a_perfect_prediction_first(tmp_path, corpus):
    out, d, holdout, matrix = corpus
    perfect = save_prediction(tmp_path / "p.pt", holdout, matrix[holdout], out, len(matrix))
    noisy = save_prediction(tmp_path / "n.pt", holdout, matrix[holdout] + 0.3, out, len(matrix))
    report = reconstruction_report(matrix=matrix, corpus_dir=out, predictions={"DefinitionEMB": perfect, "noisy": noisy},
                                   baseline_predictions={}, seed=1, resamples=200)
    methods = report["methods"]
    assert set(methods) == {"mean row", "definition mean", "random", "DefinitionEMB", "noisy"}
    assert methods["DefinitionEMB"]["all"] == pytest.approx({"n": 3, "cosine": 1.0, "sq_distance": 0.0, "mrr": 1.0,
                                                              "hits@1": 1.0, "hits@10": 1.0, "hits@100": 1.0,
                                                              "median_rank": 1.0, "norm_ratio": 1.0})
    assert {g: m["n"] for g, m in methods["mean row"].items()} == {"frequent": 2, "medium": 1, "all": 3}
    assert report["best_baseline"] in ("mean row", "definition mean", "random")
    assert report["best_baseline"] == max(report["baselines"], key=lambda n: methods[n]["all"]["mrr"])
    assert set(report["bootstrap"]) == {"DefinitionEMB", "noisy"}
    assert report["collapse"]["mean row"] == pytest.approx(1.0)
    unit = matrix[holdout] / np.linalg.norm(matrix[holdout], axis=1, keepdims=True)
    centre = matrix[holdout].mean(axis=0) / np.linalg.norm(matrix[holdout].mean(axis=0))
    assert report["collapse"]["DefinitionEMB"] == pytest.approx(float((unit @ centre).mean()))
    boot = report["bootstrap"]["DefinitionEMB"]["reciprocal_rank"]
    assert boot["system_mean"] == 1.0 and boot["baseline_mean"] == methods[report["best_baseline"]]["all"]["mrr"]
    assert "subword" in report["notes"] and "not computed" in report["notes"]["subword"]
    md = reconstruction_markdown(report)
    assert "| DefinitionEMB (system) | 1.000 | 0.000 | 1.0000 |" in md
    json.dumps(report)


def test_bad_inputs_are_refused(tmp_path, corpus, tiny_dir):
    out, d, holdout, matrix = corpus
    good = save_prediction(tmp_path / "p.pt", holdout, matrix[holdout], out, len(matrix))
    with pytest.raises(ReconstructionError, match="rows but"):
        reconstruction_report(matrix=matrix[:-1], corpus_dir=out, predictions={"x": good})
    partial = save_prediction(tmp_path / "q.pt", holdout[:2], matrix[holdout[:2]], out, len(matrix))
    with pytest.raises(ReconstructionError, match="no prediction for 1 of the 3 held-out tokens"):
        reconstruction_report(matrix=matrix, corpus_dir=out, predictions={"x": partial})
    other = tmp_path / "other"
    other.mkdir()
    (other / "dict.txt").write_text((out / "dict.txt").read_text() + "extra 1\n")
    foreign = save_prediction(tmp_path / "f.pt", holdout, matrix[holdout], other, len(matrix) + 1)
    with pytest.raises(ReconstructionError, match="predictions for another dictionary"):
        reconstruction_report(matrix=matrix, corpus_dir=out, predictions={"x": good}, baseline_predictions={"f": foreign})
    with pytest.raises(ReconstructionError, match="no holdout.json"):
        reconstruction_report(matrix=matrix, corpus_dir=tiny_dir / "corpus", predictions={"x": good})
    meta = json.loads((out / "holdout.json").read_text())
    meta["ids"].append(len(matrix) + 7)
    (out / "holdout.json").write_text(json.dumps(meta))
    with pytest.raises(ReconstructionError, match="outside the dictionary"):
        reconstruction_report(matrix=matrix, corpus_dir=out, predictions={"x": good})


def test_cli_writes_nothing_on_bad_input(tmp_path, corpus, capsys):
    from fairseq_defemb.cli.analyze import main as analyze_main

    out, d, holdout, matrix = corpus
    np.save(tmp_path / "E.npy", matrix.astype(np.float32))
    good = save_prediction(tmp_path / "p.pt", holdout, matrix[holdout], out, len(matrix))
    other = tmp_path / "other"
    other.mkdir()
    (other / "dict.txt").write_text((out / "dict.txt").read_text() + "extra 1\n")
    foreign = save_prediction(tmp_path / "f.pt", holdout, matrix[holdout], other, len(matrix) + 1)
    report = tmp_path / "report"
    argv = ["reconstruction", "--checkpoint", str(tmp_path / "E.npy"), "--corpus", str(out), "--out", str(report)]
    assert analyze_main(argv + ["--predictions", f"DefinitionEMB={good}", f"other={foreign}"]) == 2
    assert "predictions for another dictionary" in capsys.readouterr().err
    assert not report.exists()
    assert analyze_main(argv + ["--predictions", f"DefinitionEMB={good}", "--resamples", "50"]) == 0
    saved = json.loads((report / "report.json").read_text())
    assert saved["methods"]["DefinitionEMB"]["all"]["mrr"] == 1.0 and (report / "summary.md").is_file()
