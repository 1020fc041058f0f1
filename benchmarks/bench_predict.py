"""Stage ``predict``: predict_embeddings against the batched-forward bound (target >= 0.8) and against one
token at a time at batch 1, the authors' way (target >= 5x)."""
import json
import statistics
from pathlib import Path

import torch

from benchmarks.flops import flops_per_sequence, layer_params, prediction_batch_flops
from benchmarks.harness import (BART_LAYERS, FFN, PREDICT_MAX_TOKENS, ROBERTA_LAYERS, WIDTH, Fixtures, growth_exponent,
                                interleaved, log, median_ratio)


def save_trained_like(fx: Fixtures, family: str, corpus: Path) -> Path:
    """A DefinitionEMB checkpoint as fairseq-train writes it (random projection: speed only)."""
    from fairseq_defemb.convert.fairseq_checkpoint import save_model_checkpoint

    _, model, _, cfg = fx.definition_model(family, corpus)
    return save_model_checkpoint(model, cfg, fx.root / f"defemb-{family}-{corpus.name}.pt")


def one_token_at_a_time(model, dataset, family: str) -> dict[int, torch.Tensor]:
    """The authors' way: one forward per predicted token at batch 1, the whole network each
    time, means per token in float64. RoBERTa: the stock encoder over the prompt with that one
    <mask>, W at its position. BART: the decoder fed the target prefix up to p_k, its last
    state (Section 5.1), the encoder run once per prompt (a script re-running it per token
    is slower still)."""
    sums, counts = {}, {}
    with torch.inference_mode():
        for i in range(len(dataset)):
            sample = dataset.collate_indices([i])
            net = sample["net_input"]
            if family == "roberta":
                hidden, _ = model.encoder.extract_features(net["src_tokens"])
                predicted = model.projection(hidden[net["predict_mask"]])
            else:
                encoder_out = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
                predicted = torch.stack([
                    model.projection(model.decoder.extract_features(
                        net["prev_output_tokens"][:, :t + 1], encoder_out=encoder_out)[0][0, -1])
                    for t in net["predict_mask"][0].nonzero().flatten().tolist()])
            for token, vector in zip(sample["target"].tolist(), predicted.double()):
                sums[token] = sums.get(token, 0) + vector
                counts[token] = counts.get(token, 0) + 1
    return {token: (sums[token] / counts[token]).float() for token in sums}


def prediction_flops(family: str, samples: list[dict]) -> float:
    """FLOPs of the prediction forwards over ``samples``, from the shape and padded lengths."""
    layers = ROBERTA_LAYERS if family == "roberta" else BART_LAYERS
    return sum(prediction_batch_flops(s, layers, WIDTH, FFN, family == "bart") for s in samples)


def predict_pair(fx: Fixtures, family: str, prompts: int, repeats: int, against_one_at_a_time: bool) -> dict:
    """``predict_embeddings`` (what defemb-predict runs) against one batched forward over the
    same pre-collated batches (the bound) and, optionally, against one token at a time."""
    from fairseq_defemb.predict import load_definition_model, predict_with_model

    corpus = fx.subset(prompts)
    model, task = load_definition_model(save_trained_like(fx, family, corpus), corpus)
    ds = task.build_cloze_dataset("train", predict=True)
    batches = ds.batch_by_size(ds.ordered_indices(), max_tokens=PREDICT_MAX_TOKENS)
    samples = [ds.collate_indices(b) for b in batches]
    tokens = sum(s["ntokens"] for s in samples)

    def ours():
        # Per-occurrence means, as one_token_at_a_time takes them: the comparison checks the batched
        # forward, not the choice of average (same cost either way).
        return predict_with_model(model, task, ("train",), max_tokens=PREDICT_MAX_TOKENS, progress=False,
                                  average="occurrences")

    def bound():
        with torch.inference_mode():
            for s in samples:
                model(**s["net_input"])

    ours(), bound()  # warm-up
    times = interleaved({"ours": ours, "bound": bound}, repeats)
    seconds = statistics.median(times["ours"])
    flops = prediction_flops(family, samples)
    r = {"prompts": prompts, "items": len(ds), "tokens": tokens, "batches": len(batches), "seconds": seconds,
         "tokens_per_s": tokens / seconds, "bound_tokens_per_s": tokens / statistics.median(times["bound"]),
         "ratio_to_bound": median_ratio(times, "bound", "ours"), "flops_per_token": flops / tokens,
         "achieved_flops_per_s": flops / seconds,
         "padding_share": 1 - tokens / sum(s["net_input"]["src_tokens"].numel() for s in samples)}
    if against_one_at_a_time:
        single = {}  # the last run's means, for the comparison of outputs

        def authors():
            single.update(one_token_at_a_time(model, ds, family))

        # One at a time is slow: fewer rounds, each against its own run of ours.
        fns = {"ours": ours, "one_token_at_a_time": authors}
        if family == "bart":
            def one_prompt_at_a_time():  # batching alone, without the one teacher-forced pass per prompt
                with torch.inference_mode():
                    for i in range(len(ds)):
                        model(**ds.collate_indices([i])["net_input"])
            fns["one_prompt_at_a_time"] = one_prompt_at_a_time
        slow = interleaved(fns, max(1, repeats // 2))
        ids, batched, _ = ours()
        assert sorted(single) == ids.tolist(), "one token at a time predicts other tokens"
        if family == "roberta":  # the full forward of every item at its own length, then W
            n = ROBERTA_LAYERS * layer_params(WIDTH, FFN)
            single_flops = sum(flops_per_sequence(n, ROBERTA_LAYERS, int(length), WIDTH, training=False)
                               + 2 * WIDTH * WIDTH for length in ds.sizes)
            r["one_token_at_a_time_flops_per_s"] = single_flops / statistics.median(slow["one_token_at_a_time"])
        r.update(one_token_at_a_time_seconds=statistics.median(slow["one_token_at_a_time"]),
                 speedup_vs_one_token_at_a_time=median_ratio(slow, "one_token_at_a_time", "ours"),
                 predicted_tokens=len(ids), predictions=int(sum(s["target"].numel() for s in samples)),
                 max_abs_diff_vs_one_token_at_a_time=max(
                     (batched[k] - single[t]).abs().max().item() for k, t in enumerate(ids.tolist())),
                 embedding_norm=float(batched.norm(dim=1).mean()))
        if "one_prompt_at_a_time" in slow:
            r.update(one_prompt_at_a_time_seconds=statistics.median(slow["one_prompt_at_a_time"]),
                     speedup_vs_one_prompt_at_a_time=median_ratio(slow, "one_prompt_at_a_time", "ours"))
    return r


def bench_predict(fx: Fixtures) -> dict:
    # RoBERTa has one item per headword subword (~10 a prompt), BART one per prompt.
    sizes = {"roberta": [10, 20, 40], "bart": [20, 40, 80]} if fx.quick else \
        {"roberta": [40, 80, 160], "bart": [100, 200, 400]}
    repeats = 3 if fx.quick else 6
    result = {"target_bound": ">= 0.8", "target_speedup": ">= 5x"}
    for family in ("roberta", "bart"):
        scaling = []
        for k, n in enumerate(sizes[family]):
            log(f"predict {family} over {n} prompts: ours vs the batched-forward bound"
                f"{', vs one token at a time' if k == 1 else ''} ...")
            scaling.append(predict_pair(fx, family, n, repeats, against_one_at_a_time=(k == 1)))
            log(json.dumps(scaling[-1]))
        result[family] = {"scaling": scaling, "speed": scaling[1], "bound": scaling[-1],
                          "growth_exponent": growth_exponent([x["tokens"] for x in scaling], [x["seconds"] for x in scaling])}
    return result
