"""``make bench``: speed and memory of every stage, as ratios against same-process baselines.

Each figure compares two things measured in the same process on the same data,
interleaved (A B A B ...) and summarised by the median of the per-round ratios, so it
holds on a noisy machine. Writes benchmarks/results.json and the generated part of
benchmarks/README.md.

    python -m benchmarks.run [--quick] [--only corpus training predict isotropy surgery scale gpu]

Fixtures (built in a temporary directory, random weights, real fairseq checkpoints):

* the GPT-2 dictionary (all 50,257 ids of encoder.json, descending counts) and the full
  GCIDE definition corpus for it (``defemb-corpus --bpe gpt2``), also the corpus benchmark;
* a RoBERTa of all-MiniLM-L6's shape (6 layers, 384 wide, 12 heads, ffn 1,536) and a small
  BART (3 + 3 layers of the same width) over that dictionary, built by fairseq's own
  ``masked_lm`` / ``denoising`` tasks and saved in the trainer's checkpoint format;
* definition corpora of N prompts drawn (seeded) from the full GCIDE corpus.

Layout: the stages corpus, training and predict are the modules bench_corpus, bench_training and
bench_predict, run in this process; isotropy and surgery are the scripts bench_isotropy.py and
bench_surgery.py, run as subprocesses (their JSON read back); gpu is bench_gpu, whose steps each run in
their own process with their own time limit (paper shapes on CUDA, tiny ones on the CPU). harness.py holds the timing helpers and
the fixtures, flops.py the FLOP counts and the paper-scale estimate, report.py the README section.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_corpus import bench_corpus
from benchmarks.bench_gpu import bench_gpu
from benchmarks.bench_predict import bench_predict
from benchmarks.bench_scale import bench_scale
from benchmarks.bench_training import bench_training
from benchmarks.flops import paper_scale
from benchmarks.harness import HERE, STAGE_NAMES, Fixtures, cpu_sgemm_flops, last_json, log, run
from benchmarks.report import table, write_readme
from fairseq_defemb.atomic_io import write_json


# -- stages from the other benchmark scripts ---------------------------------------

def bench_isotropy(fx: Fixtures) -> dict:
    log("benchmarks/bench_isotropy.py ...")
    return last_json(run([sys.executable, HERE / "bench_isotropy.py", *(["--quick"] if fx.quick else [])]))


def bench_surgery(fx: Fixtures) -> dict:
    result = {}
    # Cost vs checkpoint size: 2, 6 and bart.large's 12 layers per side (the target).
    for layers in ([1, 2, 3] if fx.quick else [2, 6, 12]):
        log(f"benchmarks/bench_surgery.py, BART-large width, {layers} layers per side ...")
        root = fx.root / f"surgery-{layers}"
        result[f"layers_{layers}"] = last_json(run([sys.executable, HERE / "bench_surgery.py", "--root", root,
                                                    "--layers", layers, "--repeats", 2 if layers == 12 else 1]))
        for path in root.rglob("*.pt"):
            path.unlink()  # up to 1.6 GB each
    result["target_shape"] = max(result, key=lambda k: int(k.split("_")[1]))
    return result


STAGES = dict(zip(STAGE_NAMES, (bench_corpus, bench_training, bench_predict, bench_isotropy, bench_surgery, bench_scale,
                                bench_gpu)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: smaller sizes, one repeat (figures not for the table)")
    parser.add_argument("--only", nargs="*", choices=list(STAGES), help="stages to run; the others keep their last figures")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="results file (default benchmarks/results.json)")
    parser.add_argument("--readme", default=str(HERE / "README.md"), help="README whose generated section is rewritten")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: recompute the paper-scale estimate and the README section from --out")
    args = parser.parse_args(argv)
    stages = args.only or list(STAGES)
    out = Path(args.out)
    if args.report_only:
        results = json.loads(out.read_text())
        results["paper_scale"] = paper_scale(results)
        write_json(out, results)
        write_readme(results, Path(args.readme))
        print(table(results))
        return 0
    results = json.loads(out.read_text()) if args.only and out.exists() else {}
    results["torch_threads"] = torch.get_num_threads()
    # The machine's matmul rate is the best measured, this run's or (with --only) an earlier one's: a
    # re-run on a loaded machine must not lower the rate the kept stages' FLOP shares are read against.
    sgemm = [cpu_sgemm_flops(), results.get("cpu_sgemm_flops_per_s", 0)]
    with tempfile.TemporaryDirectory(prefix="defemb-bench-") as tmp:
        fx = Fixtures(Path(tmp), args.quick)
        for stage in stages:
            start = time.perf_counter()
            log(f"== {stage} ==")
            sgemm.append(cpu_sgemm_flops())  # at every stage: the best is the machine's rate, not its load
            results[stage] = STAGES[stage](fx)
            results[stage].update(quick=args.quick, stage_seconds=time.perf_counter() - start,
                                  measured=time.strftime("%Y-%m-%d", time.gmtime()))
            log(f"{stage} done in {results[stage]['stage_seconds']:.0f} s")
            write_json(out, results)  # partial results survive a failure
    results["cpu_sgemm_flops_per_s"] = max(sgemm)
    results["paper_scale"] = paper_scale(results)
    write_json(out, results)
    write_readme(results, Path(args.readme))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
