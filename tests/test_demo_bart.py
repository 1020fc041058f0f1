"""The shortened `make demo-bart` end to end: every figure of its summary must come from what it
saved: isotropy during pretraining, the four matrices, ROUGE and the bootstrap."""
import json
import subprocess
import sys

import numpy as np
import pytest

from doc_blocks import doc_block
from conftest import REPO, VENV_BIN, run_example
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix
from fairseq_defemb.analysis.report import model_groups, read_lines
from fairseq_defemb.analysis.isotropy import CONVENTIONS, isotropy_by_group
from fairseq_defemb.analysis.rouge import METRICS, rouge_155
from fairseq_defemb.analysis.significance import paired_bootstrap, pool
from fairseq_defemb.data.vocabulary import load_model_dictionary

sys.path.insert(0, str(REPO / "examples"))
from demo_bart import BUDGETS, GROUPS, METHODS, pretrain_options  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-bart")
    out = root / "demo-bart-out"
    run_example(doc_block("demo-bart-ci"), out, timeout=2400)
    assert sorted(p.name for p in root.iterdir()) == ["demo-bart-out"]  # no temporary folder left behind
    return out, json.loads((out / "summary.json").read_text())


def groups_of(out):
    return model_groups(load_model_dictionary(out / "original" / "dict.txt"))


@pytest.mark.slow
def test_isotropy_trace_starts_at_fairseqs_initialisation_and_ends_at_the_kept_model(demo, tmp_path):
    out, summary = demo
    trace, groups = summary["isotropy_during_pretraining"]["trace"], groups_of(out)
    final = isotropy_by_group(read_embedding_matrix(out / "original" / "model.pt"), groups)
    assert trace[-1]["update"] == BUDGETS["ci"]["pretrain_updates"]
    assert summary["isotropy_during_pretraining"]["conventions"]["paper"].endswith(
        "dirs:one-per-eigvec(eig sign)|groups:30/50/20 by index|specials:4+<mask> excluded|lse:no-clip")
    for convention in CONVENTIONS:
        for group in GROUPS:
            assert trace[-1][convention][group] == pytest.approx(final[convention][group], rel=1e-9)
    # Update 0 is what stock fairseq-train starts from: with a learning rate of 0 its first
    # interval checkpoint holds the initial weights unchanged.
    options = [str(o) for o in pretrain_options(BUDGETS["ci"], summary["seed"])]
    options[options.index("--save-interval-updates") + 1] = "1"
    run = subprocess.run([str(VENV_BIN / "fairseq-train"), str(out / "pretrain-bin"), "--user-dir", str(REPO / "fairseq_defemb"),
                          "--task", "denoising", *options, "--lr", "0", "--warmup-init-lr", "0", "--max-update", "1",
                          "--save-dir", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    start = isotropy_by_group(read_embedding_matrix(tmp_path / "checkpoint_1_1.pt"), groups)
    assert trace[0]["update"] == 0
    for convention in CONVENTIONS:
        for group in GROUPS:
            assert trace[0][convention][group] == pytest.approx(start[convention][group], rel=1e-9)
        assert trace[-1][convention]["all"] < trace[0][convention]["all"]  # the degeneration Figure 1 shows


@pytest.mark.slow
def test_geometry_table_is_the_saved_matrices(demo):
    out, summary = demo
    groups = groups_of(out)
    for name in ("original", "DelDirection", "DelDirection-centred", "Del-zscore", "DefinitionEMB"):
        reported = summary["analysis"]["matrices"][name]["isotropy"]
        recomputed = isotropy_by_group(read_embedding_matrix(out / name / "model.pt"), groups)
        for convention in CONVENTIONS:
            for group in GROUPS:
                assert recomputed[convention][group] == pytest.approx(reported[convention][group], rel=1e-9), \
                    (name, convention, group)
    replaced = json.loads((out / "DefinitionEMB" / "surgery.json").read_text())["num_changed"]
    assert replaced > 0 and replaced == summary["candidates"]


@pytest.mark.slow
def test_rouge_and_significance_are_the_saved_hypotheses(demo):
    out, summary = demo
    refs = read_lines(out / "text" / "test.target")
    seeds = BUDGETS["ci"]["seeds"]
    per_example = {}
    for run, entry in summary["runs"].items():
        hyps = read_lines(out / "hypotheses" / f"{run}.txt")
        assert len(hyps) == len(refs) == BUDGETS["ci"]["test_docs"]
        scored = rouge_155(hyps, refs)
        assert {m: entry["rouge"][m] for m in METRICS} == pytest.approx(scored.corpus, abs=1e-9)  # ROUGE-1.5.5 seeds its bootstrap
        assert entry["rouge"]["signature"] == scored.signature == summary["rouge_signature"]
        assert entry["words_per_summary"] == pytest.approx(np.mean([len(h.split()) for h in hyps]))
        per_example[run] = scored.per_summary
    for method in METHODS:
        for metric in ("rouge1", "rouge2", "rougeL"):
            values = [summary["runs"][f"{method}-seed{s}"]["rouge"][metric] for s in seeds]
            assert summary["rouge"][method][metric]["mean"] == pytest.approx(np.mean(values), abs=1e-9)
    for method in METHODS[1:]:
        for metric in ("rouge1", "rouge2", "rougeL"):
            expected = paired_bootstrap(pool([per_example[f"original-seed{s}"][metric] for s in seeds]),
                                        pool([per_example[f"{method}-seed{s}"][metric] for s in seeds]))
            assert summary["significance"][method][metric]["p_value"] == expected["p_value"]
            assert summary["significance"][method][metric]["delta"] == pytest.approx(expected["delta"], abs=1e-9)
            test = summary["significance"][method][metric]
            assert test["pool_size"] == len(seeds) * BUDGETS["ci"]["test_docs"]
            assert test["p_value"] == pytest.approx(1 - test["wins"] / test["resamples"])
    text = (out / "summary.md").read_text()
    assert f"ROUGE: `{summary['rouge_signature']}`" in text
    assert f"`{summary['rouge_signature']}|per-summary F1`" in text
    row = next(line for line in text.splitlines() if line.startswith("| DefinitionEMB | "))
    cells = row.strip("|").split("|")[1:]
    for cell, metric in zip(cells, ("rouge1", "rouge2", "rougeL")):
        mean, std = summary["rouge"]["DefinitionEMB"][metric]["mean"], summary["rouge"]["DefinitionEMB"][metric]["std"]
        delta = mean - summary["rouge"]["original"][metric]["mean"]
        assert cell.strip().startswith(f"{mean:.2f} ± {std:.2f} ({delta:+.2f}, p "), (cell, metric)
    for png in ("figure1_pretraining.png", "rouge.png", "projection.png", "definition_training_curve.png"):
        assert (out / png).stat().st_size > 5000
