"""The shortened `make eval` end to end: its tables must come from what it saved, and no held-out
token may be a training target of either corpus a seed trained on."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_example
from doc_blocks import doc_block
from fairseq_defemb.analysis.reconstruction import aggregate, score_tokens
from fairseq_defemb.data.corpus_format import load_split
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix

sys.path.insert(0, str(REPO / "examples"))
from eval import FIT, INITS, MODELS, PAPER_RUN, READINGS, REC, UNCENTRED, name, prediction_file  # noqa: E402


@pytest.mark.slow
def test_short_eval_reports_what_it_saved(tmp_path):
    out = tmp_path / "eval-out"
    run_example(doc_block("eval-ci"), out, timeout=2400)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval-out"]  # no temporary folder left behind
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["seeds"]) == ["1", "2"]
    matrix = read_embedding_matrix(out / "original" / "model.pt").numpy()
    text = (out / "summary.md").read_text()
    held_sets = []
    for seed, result in results["seeds"].items():
        work = out / f"seed{seed}"
        holdout = np.array([int(x) for x in (work / "definitions" / "holdout_ids.txt").read_text().split()])
        held_sets.append(set(holdout.tolist()))
        assert len(holdout) == results["budget"]["holdout"]
        for split in ("train", "valid"):
            data = load_split(work / "definitions", split)
            targets = np.concatenate([data.prompts[i].numpy()[s:e] for i in range(len(data))
                                      for s, e in data.spans_of(i).tolist()])
            assert not np.isin(targets, holdout).any(), (seed, split)
        report = result["reconstruction"]
        definitions = {}
        for split in READINGS:  # the system's figures, recomputed from the prediction file it saved
            pred = PredictedEmbeddings.load(prediction_file(work, REC, split))
            order = [pred.token_ids.tolist().index(t) for t in holdout]
            definitions[split] = pred.num_definitions.numpy()[order]
            recomputed = aggregate(score_tokens(pred.embeddings.numpy()[order], holdout, matrix), np.ones(len(holdout), bool))
            assert recomputed == pytest.approx(report["methods"][name(REC, split)]["all"], rel=1e-6)
        # surgery's reading averages every prompt of both: each definition read twice
        assert (definitions["heldout,heldout_defonly"] == definitions["heldout"] + definitions["heldout_defonly"]).all()
        assert (definitions["heldout"] > 0).all()
        assert set(report["methods"]) >= {*(name(m, s) for m in MODELS for s in READINGS), "mean row", "subword"}
        assert set(result["new_words"]) == set(INITS)
    assert held_sets[0] != held_sets[1]  # two seeds, two draws of held-out tokens
    mean = np.mean([r["reconstruction"]["methods"][name(REC, "heldout")]["all"]["mrr"] for r in results["seeds"].values()])
    assert f"| {REC} | {mean:.3f} (" in text
    words = np.mean([r["new_words"]["subword mean"]["median_best_rank"] for r in results["seeds"].values()])
    assert f"| subword mean | {words:.1f} |" in text
    assert (out / "readings.png").stat().st_size > 5000
    # The ladder takes make eval's rows from what it saved: the same prediction files, the same ranks.
    from definition_ladder import READINGS as LADDER_READINGS
    from definition_ladder import main as ladder_main

    ladder = tmp_path.parent / f"{tmp_path.name}-ladder"
    assert ladder_main(["--out", str(ladder), "--seed", "1", "--eval-out", str(out),
                        "--rows", "paper", "+top-4-layers", "recommended", "fit-alone"]) == 0
    rows = json.loads((ladder / "ladder.json").read_text())
    methods = rows["report"]["methods"]
    seed1 = results["seeds"]["1"]["reconstruction"]["methods"]
    for row, model in (("recommended", REC), ("+top-4-layers", UNCENTRED), ("fit-alone", FIT), ("paper", PAPER_RUN)):
        for split, reading in LADDER_READINGS.items():
            assert methods[f"{row} | {reading}"]["all"] == pytest.approx(seed1[name(model, split)]["all"], rel=1e-6)
        assert rows["rows"][row]["seconds"]["wall"] > 0 and rows["rows"][row]["seconds"]["cpu"] is None
    assert "| recommended |" in (ladder / "ladder.md").read_text()


def test_ladder_rows_that_differ_in_their_reading_share_one_training(tmp_path):
    """+top-4-layers and recommended (and +copies and all-layers, +top-2-layers and top-2-layers) differ
    only in defemb-predict's centring: one checkpoint, made once, its cost counted in both rows; a
    checkpoint removed since is made again."""
    from definition_ladder import ROWS, once

    made = []

    def make(path):
        made.append(path)
        path.write_text("checkpoint")

    assert once(tmp_path, "key", make) == (tmp_path / "key", {"wall": 0.0, "cpu": 0.0})
    path, cost = once(tmp_path, "key", make)
    assert made == [path] and set(cost) == {"wall", "cpu"} and cost["wall"] >= 0
    path.unlink()
    once(tmp_path, "key", make)
    assert len(made) == 2
    for uncentred, centred in (("+top-4-layers", "recommended"), ("+copies", "all-layers"),
                             ("+top-2-layers", "top-2-layers")):
        trained = {row: (ROWS[row].fit, ROWS[row].train, ROWS[row].budget) for row in (uncentred, centred)}
        assert trained[uncentred] == trained[centred]
        assert ROWS[uncentred].read == ["--prediction-mean", "raw"] and ROWS[centred].read == []


def test_ladder_rows_train_at_the_run_budget_with_their_own_changes(tmp_path, monkeypatch):
    """Every row trains at the run's budget (make eval's by default, --updates / --float32 to change
    it) with what the row itself sets; a row made at another budget is made again, one made at this
    budget is reused; --eval-out takes make eval's recorded budget and refuses the options."""
    import definition_ladder

    made = []

    def run_row(step, out, original, corpus, row, seed, base):
        made.append((row, base))
        return {"row": row, "budget": vars(definition_ladder.replace(base, **definition_ladder.ROWS[row].budget))}

    monkeypatch.setattr(definition_ladder, "run_row", run_row)
    monkeypatch.setattr(definition_ladder, "score", lambda *args: {})
    monkeypatch.setattr(definition_ladder, "table", lambda *args: "")
    for path in (tmp_path / "original" / "model.pt", tmp_path / "definitions" / "corpus.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")

    def ladder(*options):
        assert definition_ladder.main(["--out", str(tmp_path), "--rows", "recommended", "4000-updates", *options]) == 0
        return [(row, base.updates, base.mixed_precision) for row, base in made]

    default = definition_ladder.BUDGET
    assert ladder("--updates", "500") == [("recommended", 500, default.mixed_precision),
                                          ("4000-updates", 500, default.mixed_precision)]
    saved = json.loads((tmp_path / "rows" / "4000-updates.json").read_text())["budget"]
    assert saved["updates"] == 4000 and saved["lr"] == default.lr  # the row's own change kept
    made.clear()
    assert ladder("--updates", "500") == []  # both made at this budget already
    assert ladder("--updates", "500", "--float32") == [("recommended", 500, False), ("4000-updates", 500, False)]
    with pytest.raises(SystemExit):
        definition_ladder.main(["--out", str(tmp_path), "--eval-out", str(tmp_path), "--updates", "500"])


def test_ladder_prompt_length_builds_its_own_corpus_of_make_evals_held_out_tokens(tmp_path, monkeypatch):
    """--max-prompt-tokens N: the rows read a corpus cut at N holding out make eval's tokens of the seed,
    and every row is trained (make eval's rows read 32-token prompts); a row kept from another corpus
    is made again; without --eval-out the option is refused."""
    import definition_ladder

    eval_out, out = tmp_path / "eval-out", tmp_path / "ladder"
    (eval_out / "original").mkdir(parents=True)
    (eval_out / "original" / "model.pt").write_text("")
    (eval_out / "seed2" / "definitions").mkdir(parents=True)
    (eval_out / "seed2" / "definitions" / "corpus.json").write_text("{}")
    (eval_out / "results.json").write_text(json.dumps({"budget": {"train": vars(definition_ladder.BUDGET)}}))
    commands, made = [], []

    class Step:
        def __init__(self, out):
            pass

        def run(self, name, command, **kwargs):
            commands.append([str(c) for c in command])
            corpus = Path(commands[-1][commands[-1].index("--out") + 1])
            corpus.mkdir(parents=True)
            (corpus / "corpus.json").write_text("{}")

    def run_row(step, out, original, corpus, row, seed, base):
        made.append((row, corpus))
        return {"row": row, "budget": vars(base)}

    monkeypatch.setattr(definition_ladder, "Step", Step)
    monkeypatch.setattr(definition_ladder, "run_row", run_row)
    monkeypatch.setattr(definition_ladder, "score", lambda *args: {})
    monkeypatch.setattr(definition_ladder, "table", lambda *args: "")
    assert definition_ladder.main(["--out", str(out), "--seed", "2", "--eval-out", str(eval_out),
                                   "--max-prompt-tokens", "64", "--rows", "recommended"]) == 0
    [corpus_cmd] = commands
    assert corpus_cmd[corpus_cmd.index("--max-prompt-tokens") + 1] == "64" and "--holdout" not in corpus_cmd
    assert corpus_cmd[corpus_cmd.index("--holdout-ids") + 1] == str(eval_out / "seed2" / "definitions" / "holdout_ids.txt")
    assert made == [("recommended", out / "definitions-64")]  # trained, not taken from make eval
    assert definition_ladder.main(["--out", str(out), "--seed", "2", "--eval-out", str(eval_out),
                                   "--max-prompt-tokens", "64", "--rows", "recommended"]) == 0
    assert len(made) == 1  # kept: same budget, same corpus
    assert definition_ladder.main(["--out", str(out), "--seed", "2", "--eval-out", str(eval_out),
                                   "--max-prompt-tokens", "48", "--rows", "recommended"]) == 0
    assert made[-1] == ("recommended", out / "definitions-48")
    with pytest.raises(SystemExit):
        definition_ladder.main(["--out", str(out), "--max-prompt-tokens", "64"])
