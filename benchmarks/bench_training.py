"""Stage ``training``: definition_cloze + mimic_mse against the stock objective of the same network on the
same prompts and batches, each through fairseq's Trainer (target >= 0.9 of the stock words/s)."""
import json
import statistics

import numpy as np
import torch

from benchmarks.flops import batch_flops
from fairseq_defemb.recipes import RECOMMENDED, bf16_is_native
from benchmarks.harness import (BART_LAYERS, FFN, ROBERTA_LAYERS, TRAIN_MAX_TOKENS, WIDTH, Fixtures, growth_exponent,
                                interleaved, log, median_ratio)


def spread_batches(ds, max_tokens: int, count: int) -> list:
    """``count`` batches of fairseq's length-bucketed batching, spread over the buckets
    (not only the shortest prompts)."""
    batches = ds.batch_by_size(ds.ordered_indices(), max_tokens=max_tokens)
    return [batches[int(i)] for i in np.linspace(0, len(batches) - 1, min(count, len(batches)))]


def training_flops(family: str, samples: list[dict]) -> float:
    """FLOPs of the training steps over ``samples``, from the model's shape and the padded
    lengths actually run."""
    layers = ROBERTA_LAYERS if family == "roberta" else BART_LAYERS
    return sum(batch_flops(s, layers, WIDTH, FFN, family == "bart") for s in samples)


def steps(trainer, make_sample, batch_list: list):
    """One pass of ``trainer.train_step`` over ``batch_list``, as a function to time."""
    def go():
        for b in batch_list:
            trainer.train_step([make_sample(b)])
    return go


def train_pair(fx: Fixtures, family: str, prompts: int, batches: int, repeats: int) -> dict:
    """definition_cloze + mimic_mse vs the stock objective of the same network on the same
    prompts, each through fairseq's Trainer (forward, backward, Adam step, its logging),
    collation included, as fairseq-train's words/s are; then our update's cost against
    --max-tokens."""
    from fairseq.data import data_utils
    from fairseq.trainer import Trainer

    corpus = fx.subset(prompts)
    stock_task, stock_model, stock_cfg, _ = fx.pretrained(family, corpus)
    # The paper updates the embeddings of RoBERTa and freezes BART's (Appendix A.2).
    task, model, criterion, cfg = fx.definition_model(family, corpus, ["--update-embeddings"] if family == "roberta" else [])
    ours = Trainer(cfg, task, model, criterion)
    stock = Trainer(stock_cfg, stock_task, stock_model, stock_task.build_criterion(stock_cfg.criterion))
    ds = task.datasets["train"]
    chosen = spread_batches(ds, TRAIN_MAX_TOKENS, batches)
    words = sum(int(ds.corpus.prompts.sizes[b].sum()) for b in chosen)

    if family == "roberta":
        stock_ds = stock_task.datasets["train"]

        def stock_sample(b):
            return stock_ds.collater([stock_ds[int(i)] for i in b])

        pad = fx.dictionary.pad()
        for b in chosen:
            assert torch.equal(stock_sample(b)["net_input"]["src_tokens"].ne(pad), ds.collate_indices(b)[
                "net_input"]["src_tokens"].ne(pad)), "masked_lm and definition_cloze batches differ"
    else:
        # Stock BART denoising objective: the same corrupted encoder input, the decoder
        # reconstructs the whole prompt with fairseq's cross_entropy over the vocabulary.
        eos, pad = fx.dictionary.eos(), fx.dictionary.pad()

        def stock_sample(b):
            sample = ds.collate_indices(b)
            targets = [ds.corpus.prompts[int(i)].long() for i in b]
            target = data_utils.collate_tokens(targets, pad)
            prev = data_utils.collate_tokens(targets, pad, eos, move_eos_to_beginning=True)
            net = sample["net_input"]
            return {"id": sample["id"], "nsentences": len(b), "ntokens": int(target.ne(pad).sum()), "target": target,
                    "net_input": {"src_tokens": net["src_tokens"], "src_lengths": net["src_lengths"],
                                  "prev_output_tokens": prev}}

    def our_sample(b):
        return ds.collate_indices(b)

    epoch_ours, epoch_stock = steps(ours, our_sample, chosen), steps(stock, stock_sample, chosen)
    epoch_ours(), epoch_stock()  # warm-up: builds the optimizers
    times = interleaved({"ours": epoch_ours, "stock": epoch_stock}, repeats)
    t_ours, t_stock = statistics.median(times["ours"]), statistics.median(times["stock"])
    samples = [our_sample(b) for b in chosen]
    flops = training_flops(family, samples)
    scaling = []
    for max_tokens in (1024, 2048, TRAIN_MAX_TOKENS):
        sized = spread_batches(ds, max_tokens, batches)
        tokens = sum(int(ds.corpus.prompts.sizes[b].sum()) for b in sized)
        seconds = statistics.median(interleaved({"ours": steps(ours, our_sample, sized)}, repeats)["ours"])
        scaling.append({"max_tokens": max_tokens, "words_per_update": tokens / len(sized),
                        "seconds_per_update": seconds / len(sized)})
    return {"prompts_in_corpus": prompts, "updates": len(chosen), "words": words, "max_tokens": TRAIN_MAX_TOKENS,
            "words_per_s": words / t_ours, "stock_words_per_s": words / t_stock, "ratio": median_ratio(times, "stock", "ours"),
            "seconds_per_update": t_ours / len(chosen), "stock_seconds_per_update": t_stock / len(chosen),
            "flops_per_word": flops / words, "achieved_flops_per_s": flops / t_ours, "scaling": scaling,
            "growth_exponent": growth_exponent([x["words_per_update"] for x in scaling],
                                               [x["seconds_per_update"] for x in scaling]),
            "baseline": "stock masked_lm task + criterion" if family == "roberta" else
                        "stock BART, denoising target (whole prompt), cross_entropy"}


def mixed_precision_pair(fx: Fixtures, family: str, prompts: int, batches: int, repeats: int) -> dict:
    """The recommended recipe's update with the stack in bfloat16 (``--bf16-autocast``) against the same
    update in float32: two models from the same pretrained weights, the same prompts and batches, each
    through fairseq's Trainer, collation included."""
    from fairseq.trainer import Trainer

    corpus = fx.subset(prompts)
    recipe = RECOMMENDED.train_options(f"defemb_{family}")
    trainers = {}
    for precision, extra in (("float32", []), ("bfloat16", ["--bf16-autocast"])):
        task, model, criterion, cfg = fx.definition_model(family, corpus, [*recipe, *extra])
        trainers[precision] = Trainer(cfg, task, model, criterion)
    ds = task.datasets["train"]  # both tasks read the same corpus, batched the same way
    chosen = spread_batches(ds, TRAIN_MAX_TOKENS, batches)
    words = sum(int(ds.corpus.prompts.sizes[b].sum()) for b in chosen)

    epochs = {precision: steps(trainer, ds.collate_indices, chosen) for precision, trainer in trainers.items()}
    for epoch in epochs.values():
        epoch()  # warm-up: builds the optimizers
    times = interleaved(epochs, repeats)
    return {"prompts_in_corpus": prompts, "updates": len(chosen), "words": words, "max_tokens": TRAIN_MAX_TOKENS,
            "recipe": recipe, "speedup": median_ratio(times, "float32", "bfloat16"),
            **{f"{p}_words_per_s": words / statistics.median(t) for p, t in times.items()}}


def bench_training(fx: Fixtures) -> dict:
    result = {"target": ">= 0.9"}
    for family in ("roberta", "bart"):
        log(f"training {family}: definition_cloze + mimic_mse vs stock, interleaved ...")
        result[family] = train_pair(fx, family, 400 if fx.quick else 1000, 2 if fx.quick else 4, 1 if fx.quick else 3)
        log(json.dumps(result[family]))
    if bf16_is_native("cpu"):
        for family in ("roberta", "bart"):
            log(f"training {family}: bfloat16 mixed precision vs float32, interleaved ...")
            result[f"{family}_mixed_precision"] = mixed_precision_pair(
                fx, family, 400 if fx.quick else 1000, 2 if fx.quick else 4, 1 if fx.quick else 3)
            log(json.dumps(result[f"{family}_mixed_precision"]))
    else:
        result["mixed_precision"] = "not run: this CPU has no bfloat16 in hardware (AVX512-BF16 or AMX)"
    return result
