"""The benchmark harness's pure parts (the benchmarks themselves: make bench). No timing is asserted."""
import json

import pytest
from fairseq.models.transformer import TransformerConfig
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase, TransformerEncoderLayerBase

from benchmarks.flops import encoder_prediction_flops, flops_per_sequence, layer_params, paper_scale
from benchmarks.harness import growth_exponent, interleaved, last_json, median_ratio
from benchmarks.report import misses_text, table_rows, write_readme


def test_interleaved_alternates_and_the_ratio_is_taken_per_round():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] * 3 and [len(v) for v in times.values()] == [3, 3]
    # A load change between rounds (round 2 twice as slow for both) cancels in the per-round ratio.
    assert median_ratio({"a": [1.0, 2.0, 1.0], "b": [4.0, 8.0, 4.0]}, "b", "a") == 4.0


def test_growth_exponent_of_linear_quadratic_and_fixed_costs():
    sizes = [10, 20, 40]
    assert growth_exponent(sizes, [1, 2, 4]) == pytest.approx(1)
    assert growth_exponent(sizes, [1, 4, 16]) == pytest.approx(2)
    assert growth_exponent(sizes, [3, 3, 3]) == pytest.approx(0, abs=1e-12)


def test_flop_count_is_twice_the_matmul_params_per_token_plus_attention():
    d, ffn = 384, 1536
    n = layer_params(d, ffn)

    def matmul_params(layer) -> int:  # a real fairseq layer's parameters, its layer norms left out
        return sum(t.numel() for name, t in layer.named_parameters() if "layer_norm" not in name)

    cfg = TransformerConfig()
    cfg.encoder.embed_dim = cfg.decoder.embed_dim = d
    cfg.encoder.ffn_embed_dim = cfg.decoder.ffn_embed_dim = ffn
    assert n == matmul_params(TransformerEncoderLayerBase(cfg))
    assert layer_params(d, ffn, cross=True) == matmul_params(TransformerDecoderLayerBase(cfg))
    assert flops_per_sequence(n, 1, 10, d) == 3 * (2 * n * 10 + 4 * 10 * 10 * d)
    assert flops_per_sequence(n, 1, 10, d, training=False) == 2 * n * 10 + 4 * 10 * 10 * d


def test_batch_flops_count_every_row_at_the_padded_lengths():
    import torch

    from benchmarks.flops import batch_flops, prediction_batch_flops

    d, ffn = 64, 256
    sample = {"nsentences": 3, "target": torch.zeros(7, dtype=torch.long),
              "net_input": {"src_tokens": torch.zeros(3, 20), "prev_output_tokens": torch.zeros(3, 5)}}
    enc, dec = 2 * layer_params(d, ffn), 2 * layer_params(d, ffn, cross=True)
    assert batch_flops(sample, 2, d, ffn, False) == 3 * flops_per_sequence(enc, 2, 20, d)
    assert batch_flops(sample, 2, d, ffn, True) == 3 * flops_per_sequence(enc, 2, 20, d, dec, 2, 5)
    # prediction: no backward; BART's W at each of the 7 predicted positions, RoBERTa's read positions per row
    assert prediction_batch_flops(sample, 2, d, ffn, True) == (
        3 * flops_per_sequence(enc, 2, 20, d, dec, 2, 5, training=False) + 7 * 2 * d * d)
    assert prediction_batch_flops(sample, 2, d, ffn, False) == 3 * encoder_prediction_flops(2, d, ffn, 20)


def test_prediction_flops_spare_most_of_the_last_layer():
    d, ffn, length = 384, 1536, 40
    full = flops_per_sequence(6 * layer_params(d, ffn), 6, length, d, training=False)
    ours = encoder_prediction_flops(6, d, ffn, length)
    # Five full layers, then keys and values (a third of the attention weights, a sixth of the layer).
    assert flops_per_sequence(5 * layer_params(d, ffn), 5, length, d, training=False) < ours < full * 0.9
    # A one-token prompt reads every position: the count meets the full forward plus W.
    assert encoder_prediction_flops(1, d, ffn, 1) == pytest.approx(
        flops_per_sequence(layer_params(d, ffn), 1, 1, d, training=False) + 2 * d * d)


def test_paper_scale_uses_bart_large_shape_and_names_the_dominant_stage():
    ps = paper_scale({"corpus": {"mean_prompt_tokens": 43.5, "mean_headword_subwords": 9.9, "mean_variants": 4.0,
                                 "prompts": 172_971, "seconds_2_workers": 36.0}})
    # bart.large: 12 + 12 layers of 1,024 x 4,096 and a 50,265-row embedding: ~406M parameters.
    assert 400e6 < ps["bart_large_params_with_embeddings"] < 410e6
    assert ps["training_flops"] > 10 * ps["prediction_flops"]
    assert ps["dominant_stage"] == "training (one GPU)"
    assert paper_scale({}) == {}  # no measured prompt lengths, no estimate (not one from typed-in lengths)


RESULTS = {
    "torch_threads": 2, "cpu_sgemm_flops_per_s": 1e11,
    "corpus": {"seconds_2_workers": 150.0, "prompts": 1000, "scaling": [], "quick": True, "stage_seconds": 150},
    "isotropy": {"quick": False, "stage_seconds": 30, "fast_seconds": 1.5, "speedup_vs_naive": 40.0,
                 "naive_seconds_extrapolated": 60.0, "check": {"max_rel_diff_fast_vs_naive": 1e-6},
                 "scaling": {"10000": 0.3, "25000": 0.75, "50265": 1.5}},
}


def test_table_rows_and_misses_follow_the_targets():
    rows = {row[0].split(",")[0]: row for row in table_rows(RESULTS)}
    assert rows["defemb-corpus"][-1] == "**missed**" and rows["defemb-corpus"][2].startswith("150 s")
    iso = [row for row in table_rows(RESULTS) if row[0].startswith("isotropy")]
    assert [row[-1] for row in iso] == ["met", "met"] and [row[3] for row in iso] == ["<= 2.5 s", ">= 10x"]
    assert "corpus: 150 s" in misses_text(RESULTS) and "isotropy" not in misses_text(RESULTS)


def test_mixed_precision_rows_say_whether_bfloat16_pays():
    """The budgets run --bf16-autocast by default where the CPU has bfloat16, so its row's target is a
    speed-up: met above 1x, missed at or below it; a run without it says why."""
    def pair(speedup):
        return {"speedup": speedup, "bfloat16_words_per_s": 1000 * speedup, "float32_words_per_s": 1000.0,
                "updates": 4, "recipe": ["--retrieval-weight", "1"]}

    results = {"training": {"roberta_mixed_precision": pair(1.6), "bart_mixed_precision": pair(0.9)}}
    rows = [row for row in table_rows(results) if "mixed precision" in row[0]]
    assert [(row[0].split(", ")[-1], row[2].split(" ")[0], row[-1]) for row in rows] == [
        ("RoBERTa 6x384", "1.60x", "met"), ("BART 3+3x384", "0.90x", "**missed**")]
    assert "--retrieval-weight 1" in rows[0][1] and "(1600 vs 1000 words/s)" in rows[0][2]
    without = table_rows({"training": {"mixed_precision": "not run: this CPU has no bfloat16 in hardware"}})
    assert [row[2:] for row in without] == [("not run: this CPU has no bfloat16 in hardware", "> 1", "not run")]


def test_misses_carry_the_measured_breakdown():
    slow = {**RESULTS["isotropy"], "fast_seconds": 3.13,
            "necessary_work_seconds": {"gram": 0.89, "eig_float64": 1.04, "projections": 1.1, "sum": 3.03},
            "eig_threads_all_group": {"one_thread_seconds": 0.9, "two_threads_seconds": 1.2, "dim": 1024,
                                      "eigenvectors_differing": 480, "of_which_sign_flipped": 470}}
    surgery = {"parameters": 406e6, "load_save_seconds": 5.0, "load_save_peak_rss_over_file": 1.4,
               "import_seconds": {"defemb_surgery": 3.2, "torch": 1.3},
               **{m: {"seconds": s, "time_ratio": s / 5.0, "peak_rss_over_file": 0.7}
                  for m, s in (("definitionemb_alpha100", 9.5), ("definitionemb_alpha100_no_isotropy", 6.0),
                               ("deldirection", 10.5))}}
    text = misses_text({**RESULTS, "isotropy": slow, "surgery": {"target_shape": "layers_12", "layers_12": surgery}})
    assert "isotropy: 3.13 s" in text and "takes 3.03 s" in text and "0.10 s is left" in text
    assert "480 of the 1,024 eigenvectors" in text
    assert "surgery definitionemb_alpha100 (406M parameters): 9.5 s, 1.90x" in text
    assert "the isotropy report (I(E) per frequency group before and after) is 3.5 s" in text
    assert "importing the tool takes 3.2 s" in text and "What would close it" in text


def test_last_json_skips_logging_and_readme_section_is_replaced(tmp_path):
    assert last_json('log line\n{\n "a": 1\n}\n') == {"a": 1}
    assert last_json('{"a": 1}\n{"b": {"c": 2}}\nUserWarning: a line after it\n') == {"b": {"c": 2}}
    readme = tmp_path / "README.md"
    readme.write_text("# B\nprose\n<!-- results -->\nold\n<!-- /results -->\nafter\n")
    write_readme(json.loads(json.dumps(RESULTS)), readme)
    text = readme.read_text()
    assert "old" not in text and text.startswith("# B\nprose\n") and text.endswith("after\n")
    assert "| defemb-corpus" in text and "isotropy: 10,000 rows 0.30 s" in text
    assert "quick smoke run (`--quick`) of corpus:" in text and "| isotropy + frequency groups, 50,265 x 1,024" in text
    assert "(corpus, isotropy measured on a date not recorded)" in text
    # stages re-run with --only on another day keep the others' figures, each stage with its date
    dated = json.loads(json.dumps(RESULTS))
    dated["corpus"]["measured"], dated["isotropy"]["measured"] = "2026-11-27", "2026-11-25"
    write_readme(dated, readme)
    assert "(isotropy measured 2026-11-25; corpus measured 2026-11-27)" in readme.read_text()


def test_scale_fixture_holds_exactly_the_definitions_asked_for(tmp_path):
    from benchmarks.bench_scale import gpt2_headwords, write_fixture
    from preprocess.corpus.entries import SkipLog
    from preprocess.corpus.wiktionary import read_wiktionary

    report = write_fixture(tmp_path / "w.jsonl", 500)
    skips = SkipLog()
    entries = list(read_wiktionary(tmp_path / "w.jsonl", skips))
    # the reader keeps every sense (distinct glosses within a record), under GPT-2 headwords
    assert len(entries) == report["definitions"] == 500 and not skips.counts
    assert report["records"] < 500 and {e.word for e in entries} <= set(gpt2_headwords())
    assert write_fixture(tmp_path / "again.jsonl", 500) == report
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "w.jsonl").read_bytes()  # seeded


def scale_point(prompts: int, seconds: float, share: float) -> dict:
    train = {"prompts": prompts, "batches": prompts // 100, "startup_seconds": 2.0, "startup_wall_seconds": 4.0,
             "load_wall_seconds": 0.5,
             "replan_seconds": 1.0, "collate_seconds_per_batch": share * 0.05, "epoch_data_seconds_per_batch": share * 0.05,
             "gpu_seconds_per_batch": 0.05, "data_share_of_gpu_step": share, "data_memory_bytes": 3e8,
             "mapped_file_bytes": 2e8}
    predict = {"items": prompts * 7, "batches": prompts // 30, "table_and_plan_seconds": 1.0, "non_model_seconds": 20.0,
               "non_model_wall_seconds": 50.0}
    corpus = {"seconds": seconds, "peak_rss_bytes": 3e9, "prompts": prompts, "cpu_seconds_main": seconds / 4,
              "cpu_seconds_workers": [seconds / 4, seconds / 4], "cpu_seconds": 0.75 * seconds,
              "two_free_cores_seconds_lower_bound": seconds / 4}
    return {"definitions": prompts, "corpus": corpus,
            "train_sentinel": train, "train_bert": {**train, "data_share_of_gpu_step": 2 * share},
            "predict_sentinel": predict, "predict_bert": predict,
            "load_average_1min": {"start": 5.0, "end": 6.0, "cores": 2}}


def test_scale_rows_misses_and_growth():
    from benchmarks.bench_scale import BOUNDS, growth

    sizes = [scale_point(n, n / 2000, 0.03) for n in (170_000, 500_000, 1_455_715)]
    scale = {"bounds": BOUNDS, "gpu": "one A100", "gpu_models": {"sentinel": "BART-large", "bert": "RoBERTa-base"},
             "sizes": sizes, "at_largest": sizes[-1], "growth_exponents": growth(sizes), "quick": False, "stage_seconds": 1}
    assert scale["growth_exponents"]["corpus CPU seconds"] == pytest.approx(1)
    assert scale["growth_exponents"]["start-up bert"] == pytest.approx(0, abs=1e-12)
    rows = [row for row in table_rows({"scale": scale}) if row[0].startswith("scale")]
    assert len(rows) == 10
    # 728 s > 10 min: missed; 3 GB <= 4 GB; BART's 3% met, RoBERTa's 6% missed
    corpus = [row for row in rows if row[0].startswith("scale: defemb-corpus")]
    assert [row[-1] for row in corpus] == ["**missed**", "met"]
    epoch = [row for row in rows if row[0].startswith("scale: an epoch")]
    assert [row[-1] for row in epoch] == ["met", "**missed**"] and "3.0% (1.50 vs 50.0 ms)" in epoch[0][2]
    assert all(row[-1] == "met" for row in rows if "start-up" in row[0] or "memory" in row[0] or "predict" in row[0])
    misses = misses_text({"scale": scale})
    assert "scale corpus: 728 s" in misses and "load average was 5.0 to 6.0 on 2 cores" in misses
    assert "used 546 CPU seconds (main 182, the 2 workers 182 + 182)" in misses and "at least 182 s" in misses
    assert "scale RoBERTa (bert): an epoch's data work is 6.0%" in misses and "BART (sentinel): an epoch" not in misses


@pytest.mark.slow
def test_scale_stage_runs_end_to_end_at_a_tiny_size(tmp_path, monkeypatch):
    """`make bench ONLY=scale` in miniature (what --quick runs, at two smaller sizes): the fixture, the
    corpus build through `defemb-corpus --source wiktionary`, the four probes in fresh processes, the
    growth exponents and the report's rows. Every figure is checked for presence and sense, none for
    its speed."""
    from benchmarks import bench_scale
    from benchmarks.harness import Fixtures

    monkeypatch.setattr(bench_scale, "QUICK_SIZES", (400, 800))
    result = bench_scale.bench_scale(Fixtures(tmp_path, quick=True))
    assert [p["definitions"] for p in result["sizes"]] == [400, 800]
    for point in result["sizes"]:
        assert point["fixture"]["definitions"] == point["definitions"]
        corpus = point["corpus"]
        assert 0.9 * point["definitions"] <= corpus["prompts"] <= point["definitions"] and corpus["peak_rss_bytes"] > 0
        for corruption in ("sentinel", "bert"):
            train, predict = point[f"train_{corruption}"], point[f"predict_{corruption}"]
            assert train["prompts"] == corpus["splits"]["train"] and train["batches"] >= 1
            assert 0 < train["data_share_of_gpu_step"] and train["gpu_seconds_per_batch"] > 0
            # sentinel predicts one item per prompt; bert one per headword occurrence (more)
            assert predict["items"] >= corpus["prompts"] if corruption == "bert" else predict["items"] == corpus["prompts"]
    assert set(result["growth_exponents"]) == set(bench_scale.FIGURES)
    rows = [row for row in table_rows({"scale": {**result, "quick": True, "stage_seconds": 1}}) if row[0].startswith("scale")]
    assert len(rows) == 10 and all(row[-1] in ("met", "**missed**") for row in rows)


def test_a_step_past_its_time_limit_is_killed_with_what_it_started(tmp_path):
    import sys
    import time

    import psutil

    from benchmarks.harness import run

    pid_file = tmp_path / "grandchild"
    script = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="exceeded its 2 s limit"):
        run([sys.executable, "-c", script], timeout=2)
    assert time.monotonic() - start < 30
    grandchild = int(pid_file.read_text())

    def gone() -> bool:  # dead, or a zombie until its parent (init here) reaps it
        try:
            return psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    # killed with its group; SIGKILL is delivered asynchronously, so a loaded machine may show the
    # process running for a moment after run() returns
    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone()
    assert run([sys.executable, "-c", "print('{\"a\": 1}')"], timeout=30).strip() == '{"a": 1}'
    with pytest.raises(RuntimeError, match="failed"):
        run([sys.executable, "-c", "import sys; sys.exit(3)"], timeout=30)


def test_device_peaks_are_read_from_the_device_name():
    from benchmarks.bench_gpu import device_peaks

    def peak(name: str, precision: str = "bf16"):
        found = device_peaks(name)
        return found and found[1].get(precision)

    assert peak("NVIDIA H100 80GB HBM3") == 989 and peak("NVIDIA H100 PCIe") == 756 and peak("NVIDIA H100 NVL") == 835
    assert peak("NVIDIA A100-SXM4-80GB") == peak("NVIDIA A100 80GB PCIe") == 312
    # the general patterns do not swallow their neighbours: L4 is not L40, A10 is not A100
    assert peak("NVIDIA L4") == 121 and peak("NVIDIA L40S") == 362 and peak("NVIDIA L40") == 181
    assert peak("NVIDIA A10") == 125 and peak("NVIDIA A10G") is None
    assert peak("Tesla V100-PCIE-16GB", "fp16") == 112 and peak("Tesla V100-SXM2-32GB") is None  # no bf16 there
    assert peak("Tesla T4", "fp32") == 8.1 and device_peaks("Some Future GPU") is None


def gpu_train(family: str, precision: str, seconds_per_update: float, max_tokens: int = 4096) -> dict:
    return {"family": family, "shape": f"{family} paper shape", "precision": precision, "max_tokens": max_tokens,
            "table12_max_tokens": 4096, "fits_table12_batch": max_tokens == 4096, "warmup_updates": 5, "updates": 200,
            "overflow_skipped_updates": 0, "seconds": 200 * seconds_per_update, "seconds_per_update": seconds_per_update,
            "prompts_per_update": 109.0, "prompt_tokens_per_s": 4096 / seconds_per_update,
            "achieved_flops_per_s": 400e12, "peak_memory_bytes": 12 * 1024 ** 3, "memory": "CUDA max_memory_allocated",
            "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.13.0", "cuda": "12.8", "capability": "9.0",
            "memory_bytes": 80 * 1024 ** 3}


def test_paper_scale_hours_from_measured_rates_and_their_report():
    from benchmarks.bench_gpu import paper_scale_hours, shares_of_peak
    from benchmarks.report import gpu_rows, gpu_text

    train = {"bart_fp16": gpu_train("bart", "fp16", 0.05), "bart_bf16": gpu_train("bart", "bf16", 0.05, 2048),
             "roberta_fp16": gpu_train("roberta", "fp16", 0.02)}
    predict = {"bart": {**gpu_train("bart", "fp32", 1.0), "prompts": 3000, "items": 3000, "tokens": 120_000,
                        "seconds": 3.0, "prompts_per_s": 1000.0, "tokens_per_s": 40_000.0, "achieved_flops_per_s": 30e12}}
    hours = paper_scale_hours(train, predict)
    assert hours["training_bart_fp16"] == pytest.approx(250_000 * 0.05 / 3600)
    # a batch half of Table 12's takes twice the updates
    assert hours["training_bart_bf16"] == pytest.approx(2 * hours["training_bart_fp16"])
    assert hours["training_roberta_fp16"] == pytest.approx(400_000 * 0.02 / 3600)
    assert hours["prediction_bart"] == pytest.approx(1_455_715 / 1000 / 3600)
    steps = {"fixtures": {"limit_seconds": 150, "status": "ok", "seconds": 60.0},
             "train roberta bf16": {"limit_seconds": 75, "status": "killed at its 75 s limit", "seconds": 75.0},
             "predict roberta": {"limit_seconds": 8, "status": "not run: the stage's time limit was reached"}}
    x = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "gpu_measured": True, "train": train,
         "predict": predict, "steps": steps, "time_limit_seconds": 600, "step_limits_seconds": {"train": 75},
         "shapes": {}, "paper_scale_gpu_hours": hours, "stage_seconds": 640.0, "quick": False}
    shares_of_peak(x)
    assert train["bart_fp16"]["share_of_peak"] == pytest.approx(400 / 989)
    assert predict["bart"]["share_of_peak"] == pytest.approx(30 / 67)
    text = gpu_text({"gpu": x, "paper_scale": {"gpu_training_hours_estimate": 3.6, "gpu_prediction_hours_estimate": 0.07}})
    assert "NVIDIA H100 80GB HBM3 (torch 2.13.0, CUDA 12.8, compute capability 9.0, 80 GB)" in text
    assert "= 40% of the fp16 dense peak" in text and "Table 12's 4,096 did not fit" in text
    assert "BART-large training, 250,000 updates of 4,096 tokens: fp16 **3.5**, bf16 **6.9** GPU-hours" in text
    assert "(the FLOP-count estimate: 3.6 on one A100 at 35%)" in text and "RoBERTa-base training" in text
    assert "predicting 1,455,715 definitions: BART-large **24** GPU-minutes" in text
    assert "train roberta bf16 75 s (killed at its 75 s limit)" in text and "predict roberta: not run" in text
    [row] = gpu_rows(x)
    assert row[0] == "gpu stage (NVIDIA H100 80GB HBM3)" and row[2] == "640 s (1 of 3 steps ok)" and row[-1] == "**missed**"
    assert "gpu stage: 640 s against its 600 s" in misses_text({"gpu": x})


@pytest.mark.slow
def test_gpu_stage_without_cuda_runs_the_same_steps_at_tiny_shapes(tmp_path):
    """`make bench ONLY=gpu` on a machine without CUDA (what --quick runs), for BART alone (the paper's
    headline model; RoBERTa's steps are the same code with the other family, and each step is a process
    start-up more): the fixtures, training through fairseq's Trainer and prediction, each step in its own
    process under its limit, and the report saying that no GPU figure was measured. Every figure is
    checked for presence and sense, none for its speed."""
    from benchmarks.bench_gpu import bench_gpu
    from benchmarks.harness import Fixtures
    from benchmarks.report import gpu_text

    x = bench_gpu(Fixtures(tmp_path, quick=True), device="cpu", families=("bart",))
    assert list(x["steps"]) == ["fixtures", "train bart fp32", "predict bart"]
    assert [step["status"] for step in x["steps"].values()] == ["ok"] * 3, x["steps"]
    assert not x["gpu_measured"] and "paper_scale_gpu_hours" not in x and x["peak_tflops"] is None
    assert x["fixtures"]["corpus"]["splits"] == {"train": 560, "valid": 40} and x["fixtures"]["bart"]["parameters"] > 0
    train = x["train"]["bart_fp32"]
    assert train["max_tokens"] == 4096 and train["fits_table12_batch"] and train["updates"] >= 1
    assert train["prompt_tokens_per_s"] > 0 and train["flops_per_update"] > 0 and train["peak_memory_bytes"] > 0
    assert 1 < train["prompts_per_update"] <= 560 and "share_of_peak" not in train
    predict = x["predict"]["bart"]
    # BART predicts one item per prompt: the 40 validation prompts
    assert predict["prompts"] == predict["items"] == 40 and predict["tokens_per_s"] > 0
    assert predict["achieved_flops_per_s"] > 0
    text = gpu_text({"gpu": {**x, "stage_seconds": 60.0}})
    assert "**no GPU figure was measured: without CUDA" in text and "tiny BART (1 + 1 layers x 64" in text
    assert "paper scale at these rates" not in text and "fixtures" in text
