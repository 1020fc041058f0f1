"""Stage ``corpus``: defemb-corpus over the whole of GCIDE for the GPT-2 vocabulary (target <= 120 s)."""
import json
import time

import numpy as np

from benchmarks.harness import Fixtures, log, run


def bench_corpus(fx: Fixtures) -> dict:
    """Whole GCIDE for the GPT-2 vocabulary with 2 and 1 workers; cost vs corpus size via
    --max-senses-per-word 1, 2, 0 (= all)."""
    result = {"target": "<= 120 s with 2 workers", "scaling": []}
    runs = [(2, 0)] if fx.quick else [(2, 0), (1, 0), (2, 1), (2, 2)]
    for workers, senses in runs:
        out = fx.root / ("gcide-gpt2" if (workers, senses) == (2, 0) else f"gcide-w{workers}-s{senses}")
        log(f"defemb-corpus gcide/gpt2, {workers} worker(s), max senses per word {senses or 'all'} ...")
        start = time.perf_counter()
        run(fx.corpus_command(out, workers, ["--max-senses-per-word", senses]))
        seconds = time.perf_counter() - start
        meta = json.loads((out / "corpus.json").read_text())
        prompts = sum(meta["splits"].values())
        if (workers, senses) == (2, 0):
            fx._cache["full_corpus"] = out
            result.update(seconds_2_workers=seconds, prompts=prompts)
        elif senses == 0:
            result["seconds_1_workers"] = seconds
        if workers == 2:
            result["scaling"].append({"max_senses_per_word": senses, "prompts": prompts, "seconds": seconds})
    result["scaling"].sort(key=lambda r: r["prompts"])
    from fairseq_defemb.data.corpus_format import load_split

    train = load_split(fx.full_corpus, "train")
    result["mean_prompt_tokens"] = float(train.prompts.sizes.mean())
    spans = [train.spans_of(i) for i in range(0, len(train), 50)]
    result["mean_headword_subwords"] = float(np.mean([int((s[:, 1] - s[:, 0]).sum()) for s in spans]))
    result["mean_variants"] = float(np.mean([len(s) for s in spans]))
    return result
