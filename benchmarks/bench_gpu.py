"""Stage ``gpu``: the paper-scale training and prediction step, measured on the GPU the day there is one.

Every other GPU figure of these benchmarks is an estimate from FLOP counts at an assumed utilisation.
This stage is one prepared command that needs nothing from outside the machine:

    python -m benchmarks.run --only gpu [--quick]        (make bench ONLY=gpu)

On CUDA, at bart.large and roberta.base shapes (random weights, fairseq's own builders, the GPT-2
dictionary), each step in its own process with its own time limit (STEP_LIMITS), all within the
stage's STAGE_LIMIT seconds; a step past its limit is killed and recorded as such, the next one runs:

* ``fixtures``: a definition corpus of GCIDE's definitions under GPT-2 headwords (the scale stage's
  fixture, binarized by ``defemb-corpus --source wiktionary``), the pretrained checkpoints built by
  fairseq's ``denoising`` / ``masked_lm`` builders, and the DefinitionEMB checkpoints fairseq-train
  builds from them (saved as it saves them, for prediction);
* ``train``: ``definition_cloze`` + ``mimic_mse`` updates through fairseq's Trainer and its train
  iterator (fairseq-train's loop: DataLoader worker, collation, forward, backward, Adam), at Table 12's
  settings: ``--max-tokens 4096`` (halved until it fits), Adam (0.9, 0.98), lr 1e-4 after an inverse-sqrt
  warm-up, weight decay 0.01, dropout 0.1; BART's embeddings frozen and RoBERTa's updated, as the paper.
  fp16 and bf16 where the device has it. Prompt tokens/s, seconds per update, TFLOP/s from the FLOP
  count of the padded batches run and its share of the device's dense peak (PEAKS, by device name),
  peak memory;
* ``predict``: ``predict_with_model`` (what ``defemb-predict`` runs, float32) over the corpus's
  validation prompts, after ``load_definition_model``: prompts, items and tokens per second, TFLOP/s;
* from those, the paper-scale GPU-hours (Table 12's updates, the paper's 1,455,715 definitions) at the
  measured rates, which the report sets beside the FLOP-count estimate.

Without CUDA the same steps run at tiny shapes on the CPU, in float32 (fairseq's fp16 optimizer keeps its
flat fp32 copy on the current CUDA device, and a CPU without bf16 instructions runs torch's bf16 matmuls
in a reference kernel, seconds per update even at these shapes), and the results say that no GPU figure
was measured.

Surgery is not a step: a GPU does not help ``defemb-surgery`` (benchmarks/README.md says why); the
surgery stage measures it at bart.large's shape.

    python -m benchmarks.bench_gpu --probe fixtures|train|predict --root DIR ...   (one step)
"""
import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

from benchmarks.flops import (BASE_FFN, BASE_LAYERS, BASE_WIDTH, LARGE_FFN, LARGE_LAYERS, LARGE_WIDTH, PAPER_DEFINITIONS,
                              PAPER_UPDATES, ROBERTA_PAPER_UPDATES, batch_flops, prediction_batch_flops)
from benchmarks.harness import (PREDICT_MAX_TOKENS, TRAIN_MAX_TOKENS, Fixtures, build_pretrained, definition_model,
                                last_json, log, model_dims, run)

STAGE_LIMIT = 600  # seconds: the whole stage on one H100-class GPU
STEP_LIMITS = {"fixtures": 150, "train": 75, "predict": 60}  # per step; 150 + 4 x 75 + 2 x 60 = 570 s
FAMILIES = ("bart", "roberta")


class Shape(NamedTuple):
    """A RoBERTa or BART of fairseq ``arch`` with these dimensions (``layers`` per side)."""
    name: str
    arch: str
    layers: int
    width: int
    ffn: int
    heads: int
    positions: int

    def describe(self, family: str) -> str:
        sides = f"{self.layers} + {self.layers}" if family == "bart" else f"{self.layers}"
        return f"{self.name} ({sides} layers x {self.width}, ffn {self.ffn}, {self.heads} heads)"


SHAPES = {"paper": {"bart": Shape("bart.large", "bart_large", LARGE_LAYERS, LARGE_WIDTH, LARGE_FFN, 16, 1024),
                    "roberta": Shape("roberta.base", "roberta_base", BASE_LAYERS, BASE_WIDTH, BASE_FFN, 12, 512)},
          "tiny": {"bart": Shape("tiny BART", "bart_large", 1, 64, 256, 4, 512),
                   "roberta": Shape("tiny RoBERTa", "roberta_base", 2, 64, 256, 4, 512)}}
# Table 12 beyond harness.OPTIM (Adam, betas, lr 1e-4, 4,096 tokens): the warm-up, weight decay and dropout;
# the paper updates RoBERTa's embeddings and freezes BART's (Appendix A.2).
TABLE12 = {"bart": ["--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20000", "--warmup-init-lr", "1e-7",
                    "--weight-decay", "0.01", "--dropout", "0.1"],
           "roberta": ["--lr-scheduler", "inverse_sqrt", "--warmup-updates", "24000", "--warmup-init-lr", "1e-7",
                       "--weight-decay", "0.01", "--dropout", "0.1", "--update-embeddings"]}
PAPER_TRAIN_UPDATES = {"bart": PAPER_UPDATES, "roberta": ROBERTA_PAPER_UPDATES}
PRECISIONS = {"cuda": ("fp16", "bf16"), "cpu": ("fp32",)}
PRECISION_FLAGS = {"fp16": ["--fp16"], "bf16": ["--bf16"], "fp32": []}
# Per device and --quick: definitions in the corpus, of them validation prompts (predicted over), warm-up
# updates, timed updates at most and their seconds at most.
SIZES = {("cuda", False): (30_000, 3_000, 5, 200, 20), ("cuda", True): (10_000, 1_000, 3, 50, 8),
         ("cpu", False): (1_500, 100, 2, 10, 10), ("cpu", True): (600, 40, 1, 2, 3)}
# Dense peak TFLOP/s (no sparsity) of the vendors' datasheets, matched in order against
# torch.cuda.get_device_name(): the first pattern found wins, so the specific come before the general.
# fp32 is the non-tensor-core rate: torch leaves TF32 off for matmuls, and defemb-predict runs float32.
PEAKS = (
    (r"GH200|H200", {"fp16": 989, "bf16": 989, "fp32": 67}),
    (r"H100 NVL", {"fp16": 835, "bf16": 835, "fp32": 60}),
    (r"H100 PCIe", {"fp16": 756, "bf16": 756, "fp32": 51}),
    (r"H100", {"fp16": 989, "bf16": 989, "fp32": 67}),  # SXM: "NVIDIA H100 80GB HBM3"
    (r"A100", {"fp16": 312, "bf16": 312, "fp32": 19.5}),
    (r"L40S", {"fp16": 362, "bf16": 362, "fp32": 91.6}),
    (r"L40\b", {"fp16": 181, "bf16": 181, "fp32": 90.5}),
    (r"\bL4\b", {"fp16": 121, "bf16": 121, "fp32": 30.3}),
    (r"\bA10\b", {"fp16": 125, "bf16": 125, "fp32": 31.2}),
    (r"V100-PCIE", {"fp16": 112, "fp32": 14}),
    (r"V100", {"fp16": 125, "fp32": 15.7}),
    (r"\bT4\b", {"fp16": 65, "fp32": 8.1}),
)


def device_peaks(name: str) -> tuple[str, dict[str, float]] | None:
    """(the table's pattern, dense peak TFLOP/s per precision) of the device ``name``; None if unknown."""
    return next(((pattern, peaks) for pattern, peaks in PEAKS if re.search(pattern, name)), None)


# -- the probes (each step in a fresh process) --------------------------------------------------------

def device_info(device: str) -> dict:
    if device != "cuda":
        return {"device_name": "CPU (no CUDA)", "torch": torch.__version__, "threads": torch.get_num_threads()}
    props = torch.cuda.get_device_properties(0)
    return {"device_name": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "capability": f"{props.major}.{props.minor}", "memory_bytes": props.total_memory}


def peak_memory(device: str) -> dict:
    """The process's peak memory: on CUDA what torch allocated on the device, else the peak RSS."""
    if device == "cuda":
        return {"peak_memory_bytes": torch.cuda.max_memory_allocated(),
                "peak_reserved_bytes": torch.cuda.max_memory_reserved(), "memory": "CUDA max_memory_allocated"}
    from benchmarks.bench_scale import memory

    return {"peak_memory_bytes": memory()["VmHWM"], "memory": "peak RSS of the process (VmHWM)"}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def probe_fixtures(root: Path, shapes: str, families: list[str], definitions: int, valid: int) -> dict:
    """The corpus, then for each family the pretrained checkpoint and the DefinitionEMB one."""
    from benchmarks.bench_scale import build_corpus, write_fixture
    from fairseq_defemb.convert.fairseq_checkpoint import save_model_checkpoint

    fx = Fixtures(root, quick=True)
    jsonl = root / "definitions.jsonl"
    start = time.perf_counter()
    write_fixture(jsonl, definitions)
    # One worker: at these sizes the pool's start-up would cost more than the BPE it shares.
    corpus = build_corpus(fx, jsonl, root / "corpus", valid_size=valid, workers=1)
    jsonl.unlink()
    out = {"corpus": {"definitions": definitions, "splits": corpus["splits"],
                      "seconds": time.perf_counter() - start}}
    for family in families:
        shape, start = SHAPES[shapes][family], time.perf_counter()
        # The GPT-2 dictionary beside the checkpoint, as in a released model's directory.
        _, model, cfg = build_pretrained(family, fx.gpt2_dict.parent, shape.arch,
                                         model_dims(family, shape.layers, shape.width, shape.ffn, shape.heads,
                                                    shape.positions))
        params = sum(p.numel() for p in model.parameters())
        pretrained = save_model_checkpoint(model, cfg, fx.gpt2_dict.parent / f"{family}.pt")
        del model
        _, model, _, cfg = definition_model(family, root / "corpus", pretrained)
        save_model_checkpoint(model, cfg, root / f"defemb-{family}.pt")
        out[family] = {"parameters": params, "file_bytes": pretrained.stat().st_size,
                       "seconds": time.perf_counter() - start}
        del model
    return out


def probe_train(root: Path, shapes: str, family: str, precision: str, device: str, warmup: int, updates: int,
                seconds: float) -> dict:
    """Updates of fairseq-train's loop at Table 12's settings; the timed ones after ``warmup``."""
    from fairseq.trainer import Trainer

    if precision == "bf16" and device == "cuda" and torch.cuda.get_device_capability(0) < (8, 0):
        return {"skipped": "no bf16 on this device (compute capability below 8.0)", **device_info(device)}
    shape = SHAPES[shapes][family]
    begin = time.perf_counter()
    max_tokens = TRAIN_MAX_TOKENS
    # One GPU: fairseq's default world size is every GPU of the host.
    task, model, criterion, cfg = definition_model(
        family, root / "corpus", root / "gpt2" / f"{family}.pt",
        [*TABLE12[family], *PRECISION_FLAGS[precision], "--max-tokens", str(max_tokens), "--distributed-world-size", "1"],
        cpu=device != "cuda")
    if precision == "bf16":
        # fairseq's options make --bf16 imply --tpu (torch_xla): fairseq-train cannot run bf16 on a GPU
        # (https://github.com/facebookresearch/fairseq/issues/4696). Decoupled here, the Trainer runs it as
        # it runs fp16: the model in bf16, fp32 master weights, no loss scaling.
        cfg.common.tpu = False
    trainer = Trainer(cfg, task, model, criterion)
    ds = task.datasets["train"]

    def batches():
        """fairseq-train's epochs: each re-planned (and re-corrupted) by the task's batch iterator."""
        epoch_itr = trainer.get_train_iterator(epoch=1, load_dataset=False, disable_iterator_cache=True)
        while True:
            yield from epoch_itr.next_epoch_itr(shuffle=True)
            epoch_itr = trainer.get_train_iterator(epoch_itr.next_epoch_idx, load_dataset=False)

    def measure() -> dict:
        """``warmup`` updates, then timed ones until ``updates`` or ``seconds``, whichever comes first."""
        itr = batches()
        done = {"updates": 0, "skipped": 0, "prompt_tokens": 0, "prompts": 0, "flops": 0.0}
        for k in range(warmup + updates):
            if k == warmup:
                synchronize(device)
                start = time.perf_counter()
            elif k > warmup and time.perf_counter() - start >= seconds:
                break
            sample = next(itr)
            before = trainer.get_num_updates()
            trainer.train_step([sample], raise_oom=True)
            if k >= warmup:
                done["updates"] += 1
                done["skipped"] += trainer.get_num_updates() == before  # fp16 overflow: the update is dropped
                done["prompt_tokens"] += int(ds.corpus.prompts.sizes[sample["id"].numpy()].sum())
                done["prompts"] += sample["nsentences"]
                done["flops"] += batch_flops(sample, shape.layers, shape.width, shape.ffn, family == "bart")
        synchronize(device)
        done["seconds"] = time.perf_counter() - start
        return done

    halved = 0
    while True:
        try:
            done = measure()
            break
        except torch.OutOfMemoryError:
            # Table 12's batch does not fit: halve it (as --update-freq 2 would keep the paper's update) and start over.
            if max_tokens <= 256:
                raise
            max_tokens, halved = max_tokens // 2, halved + 1
            trainer.zero_grad()
            torch.cuda.empty_cache()
            cfg.dataset.max_tokens = max_tokens
    elapsed, setup = done["seconds"], time.perf_counter() - begin - done["seconds"]
    return {"family": family, "shape": shape.describe(family), "precision": precision, "max_tokens": max_tokens,
            "table12_max_tokens": TRAIN_MAX_TOKENS, "fits_table12_batch": halved == 0, "warmup_updates": warmup,
            "setup_and_warmup_seconds": setup, "updates": done["updates"], "overflow_skipped_updates": done["skipped"],
            "seconds": elapsed, "seconds_per_update": elapsed / done["updates"],
            "prompts_per_update": done["prompts"] / done["updates"],
            "prompt_tokens_per_s": done["prompt_tokens"] / elapsed, "flops_per_update": done["flops"] / done["updates"],
            "achieved_flops_per_s": done["flops"] / elapsed, **peak_memory(device), **device_info(device)}


def probe_predict(root: Path, shapes: str, family: str, device: str) -> dict:
    """``predict_with_model`` over the validation prompts, as defemb-predict runs it after loading."""
    from fairseq import utils

    from fairseq_defemb.predict import load_definition_model, predict_with_model

    shape = SHAPES[shapes][family]
    start = time.perf_counter()
    model, task = load_definition_model(root / f"defemb-{family}.pt", root / "corpus", device)
    load = time.perf_counter() - start
    ds = task.build_cloze_dataset("valid", predict=True)
    samples = [ds.collate_indices(b) for b in ds.batch_by_size(ds.ordered_indices(), max_tokens=PREDICT_MAX_TOKENS)]
    with torch.inference_mode():  # warm-up: the libraries' start-up and kernel choices, short to long batches
        for s in samples[::max(1, len(samples) // 2)]:
            model(**(utils.move_to_cuda(s["net_input"]) if device == "cuda" else s["net_input"]))
    synchronize(device)
    start = time.perf_counter()
    ids, _, _ = predict_with_model(model, task, ("valid",), max_tokens=PREDICT_MAX_TOKENS, progress=False)
    elapsed = time.perf_counter() - start  # the means come back to the CPU: the device is done
    flops = sum(prediction_batch_flops(s, shape.layers, shape.width, shape.ffn, family == "bart") for s in samples)
    prompts, tokens = len(ds.corpus), sum(s["ntokens"] for s in samples)
    return {"family": family, "shape": shape.describe(family), "precision": "fp32", "load_seconds": load,
            "prompts": prompts, "items": len(ds), "tokens": tokens, "predicted_tokens": len(ids),
            "batches": len(samples), "seconds": elapsed, "prompts_per_s": prompts / elapsed,
            "items_per_s": len(ds) / elapsed, "tokens_per_s": tokens / elapsed, "achieved_flops_per_s": flops / elapsed,
            **peak_memory(device), **device_info(device)}


# -- the stage ------------------------------------------------------------------------------------------

def paper_scale_hours(train: dict, predict: dict) -> dict:
    """GPU-hours of the paper's runs at the measured rates: Table 12's updates of 4,096 tokens (a smaller
    batch that fit takes proportionally more updates) and a prediction over the paper's definitions."""
    out = {}
    for key, x in train.items():
        if "seconds_per_update" in x:
            updates = PAPER_TRAIN_UPDATES[x["family"]] * x["table12_max_tokens"] / x["max_tokens"]
            out[f"training_{key}"] = updates * x["seconds_per_update"] / 3600
    for family, x in predict.items():
        if "prompts_per_s" in x:
            out[f"prediction_{family}"] = PAPER_DEFINITIONS / x["prompts_per_s"] / 3600
    return out


def shares_of_peak(result: dict) -> None:
    """Each measured rate as a share of the device's dense peak at its precision, where the table has it."""
    found = device_peaks(result["device_name"]) if result["gpu_measured"] else None
    result["peak_tflops"] = found and {"pattern": found[0], **found[1]}
    for x in [*result["train"].values(), *result["predict"].values()]:
        peak = found and found[1].get(x.get("precision"))
        if peak and "achieved_flops_per_s" in x:
            x["share_of_peak"] = x["achieved_flops_per_s"] / (peak * 1e12)


def bench_gpu(fx: Fixtures, device: str | None = None, families: tuple[str, ...] = FAMILIES) -> dict:
    """The stage on ``device`` (CUDA if there is one), for ``families`` (both unless a test asks for fewer)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    shapes = "paper" if device == "cuda" else "tiny"
    definitions, valid, warmup, updates, seconds = SIZES[device, fx.quick]
    deadline = time.monotonic() + STAGE_LIMIT
    root = fx.root / "gpu"
    root.mkdir(exist_ok=True)
    result = {"device": device, "shapes": {f: SHAPES[shapes][f].describe(f) for f in families},
              "time_limit_seconds": STAGE_LIMIT, "step_limits_seconds": STEP_LIMITS, "steps": {}, "train": {},
              "predict": {}}

    def step(name: str, kind: str, *args) -> dict | None:
        limit = min(STEP_LIMITS[kind], deadline - time.monotonic())
        record = result["steps"][name] = {"limit_seconds": round(limit)}
        if limit < 10:
            record["status"] = "not run: the stage's time limit was reached"
            return None
        log(f"gpu stage: {name} (limit {limit:.0f} s) ...")
        start = time.perf_counter()
        try:
            out = last_json(run([sys.executable, "-m", "benchmarks.bench_gpu", "--probe", kind, "--root", root,
                                 "--shapes", shapes, "--device", device, *args], timeout=limit))
            record["status"] = "ok"
        except TimeoutError:
            out, record["status"] = None, f"killed at its {limit:.0f} s limit"
        except (RuntimeError, ValueError) as err:
            out, record["status"] = None, f"failed: {str(err).strip().splitlines()[-1][:300]}"
        record["seconds"] = time.perf_counter() - start
        log(f"gpu stage: {name} {record['status']} in {record['seconds']:.0f} s")
        return out

    fixtures = step("fixtures", "fixtures", "--families", *families, "--definitions", definitions, "--valid", valid)
    if fixtures:
        result["fixtures"] = fixtures
        for family in families:
            for precision in PRECISIONS[device]:
                out = step(f"train {family} {precision}", "train", "--family", family, "--precision", precision,
                           "--warmup", warmup, "--updates", updates, "--seconds", seconds)
                if out:
                    result["train"][f"{family}_{precision}"] = out
        for family in families:
            out = step(f"predict {family}", "predict", "--family", family)
            if out:
                result["predict"][family] = out
    names = [x["device_name"] for x in [*result["train"].values(), *result["predict"].values()]]
    result["device_name"] = names[0] if names else device
    result["gpu_measured"] = device == "cuda" and any("seconds_per_update" in x for x in result["train"].values())
    shares_of_peak(result)
    if result["gpu_measured"]:
        result["paper_scale_gpu_hours"] = paper_scale_hours(result["train"], result["predict"])
    else:
        result["note"] = ("no GPU figure was measured: without CUDA the stage runs the same steps at tiny shapes on "
                          "the CPU" if device != "cuda" else "no GPU figure was measured: no training step finished")
    log(json.dumps({k: v for k, v in result.items() if k in ("device_name", "gpu_measured", "steps")}))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", choices=["fixtures", "train", "predict"], required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--shapes", choices=list(SHAPES), required=True)
    parser.add_argument("--device", choices=["cuda", "cpu"], required=True)
    parser.add_argument("--family", choices=FAMILIES)
    parser.add_argument("--families", nargs="+", choices=FAMILIES)
    parser.add_argument("--precision", choices=list(PRECISION_FLAGS))
    parser.add_argument("--definitions", type=int)
    parser.add_argument("--valid", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--updates", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    if args.device == "cpu":
        # The CPU run is a smoke run at tiny shapes: on a shared machine a second thread's spin-waits
        # cost more than it shares (a training update took 1.5x the CPU time with two).
        torch.set_num_threads(1)
    if args.probe == "fixtures":
        out = probe_fixtures(args.root, args.shapes, args.families, args.definitions, args.valid)
    elif args.probe == "train":
        out = probe_train(args.root, args.shapes, args.family, args.precision, args.device, args.warmup, args.updates,
                          args.seconds)
    else:
        out = probe_predict(args.root, args.shapes, args.family, args.device)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
