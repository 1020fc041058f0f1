"""Paired bootstrap (Koehn 2004) over pooled seeds."""
import importlib.resources
import json
from pathlib import Path

import numpy as np
import pytest

from fairseq_defemb.analysis.significance import accuracy, correctness, paired_bootstrap, pool


def test_strictly_better_system_is_significant():
    rng = np.random.default_rng(0)
    base = rng.normal(size=300)
    better = paired_bootstrap(base, base + 0.5)
    assert better["p_value"] == 0.0 and better["wins"] == 1000 and better["significant_at_0.05"]
    assert better["delta"] == pytest.approx(0.5) and better["ci95"][0] == pytest.approx(0.5)


def test_identical_systems_are_not_significant():
    base = np.random.default_rng(0).normal(size=300)
    same = paired_bootstrap(base, base.copy())
    assert same["p_value"] == 1.0 and not same["significant_at_0.05"]  # never strictly better


def test_noise_only_gives_a_middling_p_and_is_seeded():
    rng = np.random.default_rng(3)
    base = rng.normal(size=400)
    other = base + rng.normal(size=400)
    other = other - (other - base).mean()  # exactly equal means: p should be near 0.5
    result = paired_bootstrap(base, other, resamples=2000)
    assert 0.35 < result["p_value"] < 0.65
    assert paired_bootstrap(base, other, seed=7) == paired_bootstrap(base, other, seed=7)
    assert paired_bootstrap(base, other, seed=7)["p_value"] != paired_bootstrap(base, other, seed=8)["p_value"]


def test_small_real_improvement_on_accuracy_pooled_over_seeds():
    labels = [i % 3 for i in range(200)]
    seeds_base = [[l if i % 4 else (l + 1) % 3 for i, l in enumerate(labels)] for _ in range(3)]  # 75% right
    seeds_sys = [[l if i % 10 else (l + 1) % 3 for i, l in enumerate(labels)] for _ in range(3)]  # 90% right
    base = pool([correctness(p, labels) for p in seeds_base])
    system = pool([correctness(p, labels) for p in seeds_sys])
    assert base.size == 600 and accuracy(seeds_base[0], labels) == pytest.approx(0.75)
    result = paired_bootstrap(base, system)
    assert result["delta"] == pytest.approx(0.15) and result["p_value"] < 0.01


def test_bad_inputs():
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        correctness([1], [1, 2])


@pytest.mark.slow
def test_rouge_bootstrap_decisions_on_aclsum_agree_with_the_rouge_score_implementation(tmp_path):
    """A realistic set: ACLSum's 250 papers, reference = the three aspect summaries, systems =
    sentences taken from the paper's abstract. The bootstrap on per-summary ROUGE-1.5.5 scores
    (sacrerouge) reaches the decisions the previous implementation (rouge-score's per-example
    scores) reached: a clear gain (3 abstract sentences over 2) and a non-significant one (the last
    3 sentences over the first 3: p 0.28, 0.21, 0.44), with p within 0.01 of each other, since the
    per-summary scores agree to ROUGE-1.5.5's 5 printed decimals."""
    from fairseq_defemb.analysis.report import significance_test
    from fairseq_defemb.analysis.rouge import rouge_python_per_example

    data = Path(str(importlib.resources.files("aclsum") / "dataset"))
    docs = [json.loads(line) for split in ("train", "val", "test")
            for line in (data / f"{split}.jsonl").read_text(encoding="utf-8").split("\n") if line.strip()]
    refs = [" ".join(doc["summary"][aspect] for aspect in ("challenge", "approach", "outcome")) for doc in docs]
    systems = {"first2": [" ".join(doc["sentences"]["abstract"][:2]) for doc in docs],
               "first3": [" ".join(doc["sentences"]["abstract"][:3]) for doc in docs],
               "last3": [" ".join(doc["sentences"]["abstract"][-3:]) for doc in docs]}
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    for name, hyps in systems.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    previous = {name: rouge_python_per_example(hyps, refs) for name, hyps in systems.items()}
    for baseline, system, significant in (("first2", "first3", True), ("first3", "last3", False)):
        new = significance_test(tmp_path / "ref.txt", [tmp_path / f"{baseline}.txt"], [tmp_path / f"{system}.txt"])
        for metric in ("rouge1", "rouge2", "rougeL"):
            old = paired_bootstrap(previous[baseline][metric], previous[system][metric])
            assert new[metric]["pool_size"] == len(docs) >= 240
            assert new[metric]["significant_at_0.05"] == old["significant_at_0.05"] == significant, (system, metric)
            assert new[metric]["p_value"] == pytest.approx(old["p_value"], abs=0.01)
            assert new[metric]["delta"] == pytest.approx(old["delta"], abs=0.01)
            assert new[metric]["signature"].startswith("ROUGE-1.5.5|sacrerouge")
