"""The shortened `make demo` end to end: its figures must come from what it saved (issue 6)."""
import json
import subprocess
import sys

import pytest

from conftest import REPO
from defemb.surgery.checkpoint import read_embedding_matrix
from defemb.analysis.frequency_groups import frequency_groups
from defemb.analysis.isotropy import isotropy_by_group
from defemb.analysis.neighbours import max_difference, numeric_tokens, token_surfaces
from defemb.data.vocabulary import load_model_dictionary


@pytest.mark.slow
def test_short_demo_reports_what_it_saved(tmp_path):
    out = tmp_path / "demo-out"
    run = subprocess.run([sys.executable, str(REPO / "examples" / "demo.py"), "--budget", "ci", "--out", str(out)],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-out"]  # no temporary folder left behind
    summary = json.loads((out / "summary.json").read_text())
    dictionary = load_model_dictionary(out / "original" / "dict.txt")
    groups = frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))
    num_ids, num_values = numeric_tokens(token_surfaces(dictionary), dictionary.nspecial)
    for name in ("original", "DefinitionEMB", "DelDirection", "DelDirection-centred", "Del-zscore"):
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
    assert summary["curve"]["loss"][-1] < summary["curve"]["loss"][0]
    for png in ("training_curve.png", "projection.png"):
        assert (out / png).stat().st_size > 5000
