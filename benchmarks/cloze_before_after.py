"""the definition-cloze data path before and after whole-batch collation on one corpus: the per-item code (kept as
the reference in tests/test_cloze_batches.py) against the index arrays, for the occurrence table,
fairseq's size filter and batch plan (--max-tokens 4096), and the collation of 100 batches spread over
the plan. Same process, same data; prints the CPU seconds.

    python benchmarks/cloze_before_after.py CORPUS_DIR
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import fairseq_defemb  # noqa: E402

fairseq_defemb.register()
from fairseq.data import data_utils  # noqa: E402
from test_cloze_batches import ref_collate, ref_item, ref_lengths, ref_occurrences  # noqa: E402

from benchmarks.bench_scale import load_task  # noqa: E402


def timed(fn) -> float:
    """CPU seconds of ``fn()`` (one thread: on a shared machine the wall time adds others' work)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    corpus = parser.parse_args().corpus
    task = load_task(corpus, "sentinel")
    task.load_dataset("train")
    ds = task.datasets["train"]
    occ = ref_occurrences(ds)
    print(f"{len(ds):,} train prompts, load average {os.getloadavg()[0]:.1f}")

    def fresh_occurrences():
        ds._occurrences = None
        return ds.occurrences

    def fresh_filter():
        ds._lengths = None
        return ds.filter_indices_by_size(order, (512, 512))

    order = ds.ordered_indices()
    print(f"occurrence table: per item {timed(lambda: ref_occurrences(ds)):.2f} s, arrays {timed(fresh_occurrences):.3f} s")
    print(f"size filter (sentinel): per item "
          f"{timed(lambda: data_utils._filter_by_size_dynamic(order, lambda i: ref_lengths(ds, i, occ), (512, 512))):.2f} s, "
          f"arrays {timed(fresh_filter):.3f} s")
    batches = ds.batch_by_size(order, max_tokens=4096)
    per_item = timed(lambda: data_utils.batch_by_size(order, lambda i: max(ref_lengths(ds, i, occ)), max_tokens=4096))
    arrays = timed(lambda: ds.batch_by_size(order, max_tokens=4096))
    print(f"batch plan ({len(batches):,} batches): per item {per_item:.2f} s, arrays {arrays:.3f} s")
    chosen = [batches[int(i)] for i in np.linspace(0, len(batches) - 1, 100)]
    for corruption in ("sentinel", "bert"):
        ds.set_corruption(corruption)
        per_item = timed(lambda: [ref_collate(ds, [ref_item(ds, int(i), occ) for i in b]) for b in chosen])
        arrays = timed(lambda: [ds.collater(ds.__getitems__(list(b))) for b in chosen])
        print(f"collation per batch ({corruption}): per item {per_item * 10:.2f} ms, arrays {arrays * 10:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
