"""The shortened `make demo` end to end: its figures must come from what it saved."""
import json

import numpy as np
import pytest

from doc_blocks import doc_block
from conftest import run_example
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix
from fairseq_defemb.analysis.frequency_groups import frequency_groups
from fairseq_defemb.analysis.isotropy import isotropy_by_group
from fairseq_defemb.analysis.neighbours import max_difference, numeric_tokens, token_surfaces
from fairseq_defemb.data.vocabulary import load_model_dictionary


@pytest.mark.slow
def test_short_demo_reports_what_it_saved(tmp_path):
    out = tmp_path / "demo-out"
    run_example(doc_block("demo-ci"), out, timeout=1200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-out"]  # no temporary folder left behind
    summary = json.loads((out / "summary.json").read_text())
    dictionary = load_model_dictionary(out / "original" / "dict.txt")
    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))
    num_ids, num_values = numeric_tokens(token_surfaces(dictionary), dictionary.nspecial)
    for name in ("original", "DefinitionEMB", "DefinitionEMB-paper", "DefinitionEMB-fitted-W", "DelDirection",
                 "DelDirection-centred", "Del-zscore"):
        E = read_embedding_matrix(out / name / "model.pt")
        reported = summary["analysis"]["matrices"][name]
        recomputed = isotropy_by_group(E, groups)
        for convention in ("paper", "sign_invariant"):
            for group in ("frequent", "medium", "rare", "all"):
                assert recomputed[convention][group] == pytest.approx(reported["isotropy"][convention][group], rel=1e-9), \
                    (name, convention, group)
        assert max_difference(E, num_ids, num_values) == pytest.approx(reported["max_difference"], rel=1e-9)
    text = (out / "summary.md").read_text()
    for convention, label in (("paper", "paper (eig's signs)"), ("sign_invariant", "sign-invariant (both signs)")):
        iso = summary["analysis"]["matrices"]["DelDirection"]["isotropy"][convention]
        assert f"| DelDirection | {label} | " + " | ".join(f"{iso[g]:.3f}" for g in ("frequent", "medium", "rare", "all")) in text
    # Each training lowers what it optimises on the fixed validation split: the paper's Eq. 5 alone,
    # the recommended Eq. 5 plus the retrieval term (at 12 updates its Eq. 5 alone barely moves).
    for name, curve in summary["curves"].items():
        assert curve["valid_loss"][-1] < curve["valid_loss"][0], name
    # Every definition model sits beside the mean target row, in the table and in the JSON.
    rows = summary["definition_models"]
    assert rows[0]["model"].startswith("mean target row") and len(rows) == 5
    for row in rows:
        assert f"| {row['model']} | {row['updates']} | {row['loss']:.4f} | " in text
        assert row["loss_vs_mean_row"] == pytest.approx(row["loss"] / rows[0]["loss"] - 1)
    assert [r["updates"] for r in rows] == [0, 0, 0, summary["budget"]["updates"], summary["budget"]["updates"]]
    # The three definition models replace the same rows (one selection), with different vectors.
    changed = {n: json.loads((out / n / "surgery.json").read_text())["num_changed"]
               for n in ("DefinitionEMB", "DefinitionEMB-paper", "DefinitionEMB-fitted-W")}
    assert len(set(changed.values())) == 1, changed
    assert not np.allclose(read_embedding_matrix(out / "DefinitionEMB" / "model.pt"),
                           read_embedding_matrix(out / "DefinitionEMB-fitted-W" / "model.pt"))
    for png in ("training_curve.png", "projection.png"):
        assert (out / png).stat().st_size > 5000
