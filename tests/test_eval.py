"""The shortened `make eval` end to end: its table must come from what it saved, and no
held-out token may be a training target of the corpus it trained on."""
import json

import numpy as np
import pytest

from doc_blocks import doc_block
from conftest import run_example
from fairseq_defemb.analysis.reconstruction import aggregate, score_tokens
from fairseq_defemb.data.corpus_format import load_split
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix


@pytest.mark.slow
def test_short_eval_reports_what_it_saved(tmp_path):
    out = tmp_path / "eval-out"
    run_example(doc_block("eval-ci"), out, timeout=2400)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval-out"]
    results = json.loads((out / "results.json").read_text())
    holdout = np.array([int(x) for x in (out / "definitions" / "holdout_ids.txt").read_text().split()])
    assert len(holdout) == results["budget"]["holdout"]
    for split in ("train", "valid"):
        data = load_split(out / "definitions", split)
        targets = np.concatenate([data.prompts[i].numpy()[s:e] for i in range(len(data)) for s, e in data.spans_of(i).tolist()])
        assert not np.isin(targets, holdout).any()
    matrix = read_embedding_matrix(out / "original" / "model.pt").numpy()
    largest = str(results["budget"]["updates"][-1])
    report = results["reports"][largest]
    pred = PredictedEmbeddings.load(out / f"definitionemb_{largest}.pt")
    order = [pred.token_ids.tolist().index(t) for t in holdout]
    recomputed = aggregate(score_tokens(pred.embeddings.numpy()[order], holdout, matrix), np.ones(len(holdout), bool))
    assert recomputed == pytest.approx(report["methods"]["DefinitionEMB"]["all"], rel=1e-6)
    mean_row = aggregate(score_tokens(np.tile(matrix.astype(np.float64).mean(0), (len(holdout), 1)), holdout, matrix),
                         np.ones(len(holdout), bool))
    assert mean_row == pytest.approx(report["methods"]["mean row"]["all"], rel=1e-6)
    text = (out / "summary.md").read_text()
    assert "| DefinitionEMB | " in text and f"{report['methods']['DefinitionEMB']['all']['mrr']:.4f}" in text
    assert set(report["methods"]) >= {"mean row", "definition mean", "subword", "random", "fitted W (frozen encoder)",
                                      "DefinitionEMB, definition only", "DefinitionEMB, least-squares W",
                                      "fitted W, definition only"}
    assert (out / "budget_curve.png").stat().st_size > 5000
