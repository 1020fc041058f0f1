"""The generated section of benchmarks/README.md: the table of targets, cost against input size, FLOPs and
the paper's scale, and for every missed target why and what would close it, all from results.json."""
from pathlib import Path

from benchmarks.flops import (GPU_UTILISATION, PAPER_DEFINITIONS, PAPER_GPUS, PAPER_TRAIN_HOURS, PAPER_UPDATES,
                             ROBERTA_PAPER_UPDATES)
from benchmarks.harness import STAGE_NAMES, TRAIN_MAX_TOKENS, WIDTH, growth_exponent
from fairseq_defemb.atomic_io import write_text


# Isotropy with groups in the paper's convention, seconds; surgery's wall time over a bare load + save, with
# its report (I(E) before and after) and without it.
ISOTROPY_SECONDS = 2.5
SURGERY_RATIO = {"definitionemb_alpha100": 1.5, "definitionemb_alpha100_no_isotropy": 1.3, "deldirection": 1.5}


def status(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "**missed**"


def table_rows(r: dict) -> list[tuple[str, str, str, str, str]]:
    """(stage, measured as, result, target, status) for every target of the issue that ran."""
    rows = []
    t = r.get("training", {})
    for fam, name in (("roberta", "RoBERTa 6x384, embeddings updated"), ("bart", "BART 3+3x384, embeddings frozen")):
        if fam in t:
            x = t[fam]
            rows.append((f"definition_cloze + mimic_mse training, {name}",
                         f"words/s vs {x['baseline']} (same prompts and batches, Trainer, Adam)",
                         f"{x['ratio']:.2f} ({x['words_per_s']:.0f} vs {x['stock_words_per_s']:.0f} words/s)", ">= 0.9",
                         status(x["ratio"], 0.9)))
    for fam, name in (("roberta", "RoBERTa 6x384"), ("bart", "BART 3+3x384")):
        x = t.get(f"{fam}_mixed_precision")
        if x:
            # the budgets turn it on by default where the CPU has bfloat16: there it has to pay
            rows.append((f"definition_cloze training in bfloat16 mixed precision (--bf16-autocast), {name}",
                         f"words/s vs the same update in float32 (the recommended recipe: {' '.join(x['recipe'])}; "
                         "same weights and batches, Trainer, Adam)",
                         f"{x['speedup']:.2f}x ({x['bfloat16_words_per_s']:.0f} vs {x['float32_words_per_s']:.0f} words/s)",
                         "> 1", status(x["speedup"], 1.0 + 1e-9)))
    if isinstance(t.get("mixed_precision"), str):  # why the stage measured no pair
        rows.append(("definition_cloze training in bfloat16 mixed precision (--bf16-autocast)", "-",
                     t["mixed_precision"], "> 1", "not run"))
    p = r.get("predict", {})
    for fam, name in (("roberta", "RoBERTa 6x384"), ("bart", "BART 3+3x384")):
        if fam in p:
            x = p[fam]["bound"]
            rows.append((f"defemb-predict, {name}, {x['prompts']} prompts ({x['items']:,} items, {x['tokens']:,} tokens)",
                         "tokens/s vs one batched forward pass over the same batches (the bound)",
                         f"{x['ratio_to_bound']:.2f} ({x['tokens_per_s']:,.0f} vs {x['bound_tokens_per_s']:,.0f} tokens/s)",
                         ">= 0.8", status(x["ratio_to_bound"], 0.8)))
    for fam, name in (("roberta", "RoBERTa 6x384"), ("bart", "BART 3+3x384")):
        if fam in p:
            x = p[fam]["speed"]
            alone = (f"; one prompt per forward at batch 1: {x['speedup_vs_one_prompt_at_a_time']:.1f}x"
                     if "speedup_vs_one_prompt_at_a_time" in x else "")
            rows.append((f"defemb-predict, {name}, {x['prompts']} prompts ({x['predictions']:,} predictions of "
                         f"{x['predicted_tokens']} tokens)",
                         f"vs one token at a time at batch 1, the authors' way (max abs diff of the means "
                         f"{x['max_abs_diff_vs_one_token_at_a_time']:.1e})",
                         f"{x['speedup_vs_one_token_at_a_time']:.1f}x{alone}", ">= 5x",
                         status(x["speedup_vs_one_token_at_a_time"], 5)))
    i = r.get("isotropy", {})
    if "fast_seconds" in i:
        shape = "bench_isotropy.py --quick's matrix" if i.get("quick") else "50,265 x 1,024 float32"
        rows.append((f"isotropy + frequency groups, {shape}", "seconds", f"{i['fast_seconds']:.2f} s",
                     f"<= {ISOTROPY_SECONDS:g} s", status(i["fast_seconds"], ISOTROPY_SECONDS, higher_is_better=False)))
        rows.append((f"isotropy + frequency groups, {shape}",
                     f"vs the naive eig-and-loop implementation (extrapolated {i['naive_seconds_extrapolated']:.0f} s; "
                     f"max rel diff {i['check']['max_rel_diff_fast_vs_naive']:.1e})",
                     f"{i['speedup_vs_naive']:.0f}x", ">= 10x", status(i["speedup_vs_naive"], 10)))
    s = r.get("surgery", {})
    if s.get("target_shape"):
        x = s[s["target_shape"]]
        shape = f"{x['parameters'] / 1e6:.0f}M params, {x['file_bytes'] / 1e9:.2f} GB"
        for method in ("definitionemb_alpha100", "definitionemb_alpha100_no_isotropy", "deldirection"):
            m = x[method]
            verified = "; output passes --verify" if method == "definitionemb_alpha100" and x.get("verify_ok") else ""
            median = (f"; per-round median {m['median_time_ratio_same_round']:.2f}x"
                      if "median_time_ratio_same_round" in m else "")
            rows.append((f"defemb-surgery {method}, {shape}", f"wall time vs bare torch.load + torch.save{verified}",
                         f"{m['time_ratio']:.2f}x ({m['seconds']:.1f} vs {x['load_save_seconds']:.1f} s{median})",
                         f"<= {SURGERY_RATIO[method]:g}x", status(m["time_ratio"], SURGERY_RATIO[method], higher_is_better=False)))
            rows.append((f"defemb-surgery {method}, {shape}", "peak RSS / file size",
                         f"{m['peak_rss_over_file']:.2f}x (load + save: {x['load_save_peak_rss_over_file']:.2f}x)",
                         "<= 2.2x", status(m["peak_rss_over_file"], 2.2, higher_is_better=False)))
    rows += scale_rows(r.get("scale", {}))
    rows += gpu_rows(r.get("gpu", {}))
    c = r.get("corpus", {})
    if "seconds_2_workers" in c:
        one = f"; 1 worker {c['seconds_1_workers']:.0f} s" if "seconds_1_workers" in c else ""
        rows.append((f"defemb-corpus, whole GCIDE, GPT-2 BPE ({c['prompts']:,} prompts)", "seconds with 2 workers",
                     f"{c['seconds_2_workers']:.0f} s{one}", "<= 120 s",
                     status(c["seconds_2_workers"], 120, higher_is_better=False)))
    return rows


SCALE_MODELS = (("sentinel", "BART (sentinel)"), ("bert", "RoBERTa (bert)"))


def scale_rows(x: dict) -> list[tuple[str, str, str, str, str]]:
    """The scale stage's bounds at its largest size (the paper's 1,455,715 definitions in a full run)."""
    if "at_largest" not in x:
        return []
    p, b, gb = x["at_largest"], x["bounds"], 1024 ** 3
    c = p["corpus"]
    where = f"{p['definitions']:,} definitions ({c['prompts']:,} prompts)"
    workers = " + ".join(f"{w:.0f}" for w in c["cpu_seconds_workers"])
    rows = [(f"scale: defemb-corpus --source wiktionary, {where}", "wall seconds with 2 workers (CPU seconds of its processes)",
             f"{c['seconds']:.0f} s (CPU: main {c['cpu_seconds_main']:.0f} s, workers {workers} s)",
             f"<= {b['corpus_seconds']} s", status(c["seconds"], b["corpus_seconds"], False)),
            (f"scale: defemb-corpus --source wiktionary, {where}", "peak RSS of the process tree (main + 2 workers)",
             f"{c['peak_rss_bytes'] / gb:.2f} GB", f"<= {b['corpus_peak_rss_gb']} GB",
             status(c["peak_rss_bytes"] / gb, b["corpus_peak_rss_gb"], False))]
    for corruption, name in SCALE_MODELS:
        t, gpu = p[f"train_{corruption}"], x["gpu_models"][corruption]
        rows += [(f"scale: definition_cloze start-up, {name}, {t['prompts']:,} train prompts",
                  "CPU seconds (wall beside): task, dataset load, fairseq's batch plan (order, size filter, "
                  "--max-tokens 4096)", f"{t['startup_seconds']:.1f} s (wall {t['startup_wall_seconds']:.1f} s; "
                  f"{t['batches']:,} batches)", f"<= {b['startup_seconds']} s",
                  status(t["startup_seconds"], b["startup_seconds"], False)),
                 (f"scale: an epoch's data work per batch, {name}",
                  f"CPU time of re-plan + re-corruption + collation per batch vs {gpu} forward + backward of the same "
                  f"padded batch ({x['gpu']}, from its FLOPs)",
                  f"{t['data_share_of_gpu_step']:.1%} ({t['epoch_data_seconds_per_batch'] * 1e3:.2f} vs "
                  f"{t['gpu_seconds_per_batch'] * 1e3:.1f} ms)", f"<= {b['data_share_of_gpu_step']:.0%}",
                  status(t["data_share_of_gpu_step"], b["data_share_of_gpu_step"], False)),
                 (f"scale: data memory of a training process, {name}",
                  "anonymous RSS growth after load, plan and the sampled batches (mapped corpus pages apart)",
                  f"{t['data_memory_bytes'] / gb:.2f} GB (mapped {t['mapped_file_bytes'] / gb:.2f} GB)",
                  f"<= {b['data_memory_gb']} GB", status(t["data_memory_bytes"] / gb, b["data_memory_gb"], False))]
    for corruption, name in SCALE_MODELS:
        q = p[f"predict_{corruption}"]
        rows.append((f"scale: defemb-predict non-model work, {name}, {c['prompts']:,} prompts ({q['items']:,} items)",
                     "CPU seconds of predict_with_model with a model returning zeros (occurrence table, plan, "
                     "batches, bookkeeping; wall beside)", f"{q['non_model_seconds']:.0f} s (wall "
                     f"{q['non_model_wall_seconds']:.0f} s; table + plan {q['table_and_plan_seconds']:.1f} s)",
                     f"<= {b['predict_non_model_seconds']} s", status(q["non_model_seconds"], b["predict_non_model_seconds"], False)))
    return rows


def table(r: dict) -> str:
    out = "| stage | measured as | result | target | status |\n|---|---|---|---|---|\n"
    return out + "".join("| " + " | ".join(row) + " |\n" for row in table_rows(r))


def scaling_text(r: dict) -> str:
    def exponent(x: float) -> str:
        return f"**cost ~ size^{x:.2f}**"

    lines = []
    c = r.get("corpus", {})
    if len(c.get("scaling", [])) > 2:
        pts = ", ".join(f"{x['prompts']:,} prompts {x['seconds']:.0f} s" for x in c["scaling"])
        e = growth_exponent([x["prompts"] for x in c["scaling"]], [x["seconds"] for x in c["scaling"]])
        lines.append(f"* corpus (2 workers; --max-senses-per-word 1 / 2 / all): {pts}: {exponent(e)}; reading GCIDE "
                     "and the BPE of every variant are paid whatever number of senses is kept")
    t = r.get("training", {})
    for fam in ("roberta", "bart"):
        if fam in t:
            pts = ", ".join(f"--max-tokens {x['max_tokens']:,} ({x['words_per_update']:,.0f} words) "
                            f"{x['seconds_per_update']:.2f} s" for x in t[fam]["scaling"])
            lines.append(f"* training {fam}, seconds per update: {pts}: {exponent(t[fam]['growth_exponent'])} in the "
                         "tokens per update; a run is that times its updates, independent of the corpus size")
    p = r.get("predict", {})
    for fam in ("roberta", "bart"):
        if fam in p:
            pts = ", ".join(f"{x['prompts']} prompts = {x['tokens']:,} tokens {x['seconds']:.1f} s" for x in p[fam]["scaling"])
            unit = "one item per headword subword" if fam == "roberta" else "one item per prompt"
            lines.append(f"* predict {fam} ({unit}): {pts}: {exponent(p[fam]['growth_exponent'])} in the tokens")
    i = r.get("isotropy", {})
    if len(i.get("scaling", {})) > 2:
        pts = sorted((int(k), v) for k, v in i["scaling"].items())
        e = growth_exponent([k for k, _ in pts], [v for _, v in pts])
        lines.append("* isotropy: " + ", ".join(f"{k:,} rows {v:.2f} s" for k, v in pts)
                     + f": {exponent(e)} in the rows")
    s = r.get("surgery", {})
    pts = sorted((v for k, v in s.items() if k.startswith("layers_")), key=lambda v: v["parameters"])
    if len(pts) > 2:
        e = growth_exponent([v["file_bytes"] for v in pts], [v["definitionemb_alpha100"]["seconds"] for v in pts])
        lines.append("* surgery (BART-large width, N layers per side): " + ", ".join(
            f"{v['parameters'] / 1e6:.0f}M params ({v['file_bytes'] / 1e9:.2f} GB): load + save {v['load_save_seconds']:.1f} s, "
            f"DefinitionEMB {v['definitionemb_alpha100']['seconds']:.1f} s" for v in pts) + f": {exponent(e)} in the file size")
    x = r.get("scale", {})
    if len(x.get("sizes", [])) > 2:
        from benchmarks.bench_scale import FIGURES

        sizes = x["sizes"]
        for name, (part, key) in FIGURES.items():
            scale, unit = (1024 ** 3, " GB") if key.endswith("bytes") else (1e-3, " ms") if "per_batch" in key else (1, " s")
            pts = ", ".join(f"{s_['corpus']['prompts']:,} prompts {s_[part][key] / scale:.2f}{unit}" for s_ in sizes)
            lines.append(f"* scale, {name}: {pts}: {exponent(x['growth_exponents'][name])} in the prompts")
    return "\n".join(lines)


def flops_text(r: dict) -> str:
    t, p, ps = r.get("training", {}), r.get("predict", {}), r.get("paper_scale", {})
    sgemm = r["cpu_sgemm_flops_per_s"]
    lines = [f"* this CPU's float32 matmul (1,024^3, {r['torch_threads']} threads): **{sgemm / 1e9:.0f} GFLOP/s**"]

    def check(name: str, per: float, unit: str, rate: float, achieved: float, how: str) -> str:
        return (f"* {name}: {per / 1e6:.0f} MFLOP per {unit} ({how}) x {rate:,.0f} {unit}s/s = "
                f"{achieved / 1e9:.0f} GFLOP/s achieved, {achieved / sgemm:.0%} of the matmul rate")

    for fam in ("roberta", "bart"):
        if fam in t:
            x = t[fam]
            lines.append(check(f"{fam} definition_cloze training", x["flops_per_word"], "word", x["words_per_s"],
                               x["achieved_flops_per_s"], "3 x (2 x matmul params + attention) per padded position, "
                               "decoder positions included for BART"))
        if fam in p:
            x = p[fam]["bound"]
            lines.append(check(f"{fam} prediction", x["flops_per_token"], "token", x["tokens_per_s"], x["achieved_flops_per_s"],
                               "RoBERTa: 5 full layers + keys/values of the 6th + one read position"
                               if fam == "roberta" else "encoder + teacher-forced decoder, one pass per prompt"))
    if ps:
        lines += [
            f"* paper scale, BART-large ({ps['bart_large_params_with_embeddings'] / 1e6:.0f}M params, "
            f"{ps['bart_large_matmul_params'] / 1e6:.0f}M in matmuls), {PAPER_UPDATES:,} updates x {TRAIN_MAX_TOKENS:,} "
            f"tokens (~{ps['prompts_per_update']:.0f} prompts of ~{ps['assumed_src_tokens']:.0f} encoder + "
            f"{ps['assumed_tgt_tokens']:.0f} decoder tokens, GCIDE's lengths measured here): "
            f"{ps['training_flops_per_prompt_token'] / 1e9:.2f} GFLOP per prompt token, training "
            f"{ps['training_flops']:.2e} FLOPs; predicting {PAPER_DEFINITIONS:,} prompts: {ps['prediction_flops']:.2e} FLOPs",
            f"* **estimate, not a measurement**, on {ps['gpu']}: training **~{ps['gpu_training_hours_estimate']:.1f} "
            f"GPU-hours**, prediction ~{ps['gpu_prediction_hours_estimate'] * 60:.0f} GPU-minutes. The paper reports "
            f"{PAPER_TRAIN_HOURS} h on {PAPER_GPUS} A100s = {ps['paper_training_gpu_hours']:.0f} GPU-hours for training, "
            f"{ps['paper_training_gpu_hours'] / ps['gpu_training_hours_estimate']:.0f}x this estimate: {TRAIN_MAX_TOKENS:,} "
            f"tokens per GPU rather than per update would be {PAPER_GPUS}x the FLOPs, and fp32 or fp16 on "
            f"~{ps['assumed_src_tokens'] + ps['assumed_tgt_tokens']:.0f}-token prompts runs well below "
            f"{GPU_UTILISATION:.0%} of the bf16 peak; the estimate is a lower bound"]
        if "gpu_training_hours_estimate_roberta_base" in ps:
            lines.append(f"* RoBERTa-base ({ps['roberta_base_matmul_params'] / 1e6:.0f}M params in matmuls), "
                         f"{ROBERTA_PAPER_UPDATES:,} updates x {TRAIN_MAX_TOKENS:,} tokens (Table 12): "
                         f"{ps['roberta_base_training_flops']:.2e} FLOPs, **~{ps['gpu_training_hours_estimate_roberta_base']:.1f} "
                         "GPU-hours** on the same assumed GPU (estimate)")
        if "data_share_bart" in ps:
            one_off = ", ".join(f"{k} {v:.0f} s" for k, v in ps["data_one_off_seconds"].items())
            lines.append(f"* the data path at the paper's scale (stage scale, measured on this CPU): per update "
                         f"{ps['data_share_bart']:.1%} of BART-large's and {ps['data_share_roberta']:.1%} of RoBERTa-base's "
                         f"GPU step, {ps['data_cpu_hours_bart']:.1f} and {ps['data_cpu_hours_roberta']:.1f} CPU-hours over the "
                         "runs, on one DataLoader worker beside the GPU (fairseq-train's --num-workers, default 1) rather "
                         f"than in its way; once per corpus or run: {one_off}")
        if "cpu_training_days_estimate" in ps:
            lines.append(f"* at the BART training FLOP/s measured here the same training would take "
                         f"~{ps['cpu_training_days_estimate']:,.0f} CPU-days (estimate)")
        if "corpus_seconds_estimate" in ps:
            lines.append(f"* corpus building at GCIDE's measured per-prompt rate for {PAPER_DEFINITIONS:,} definitions: "
                         f"~{ps['corpus_seconds_estimate'] / 60:.0f} min with 2 workers (estimate); surgery and isotropy "
                         "are measured at full shape above (seconds)")
        lines.append(f"* **the dominant stage at the paper's scale is {ps['dominant_stage']}**")
    return "\n".join(lines)


def misses_text(r: dict) -> str:
    """For every missed target: why, from the figures of this run, and what would close it."""
    lines = []
    t = r.get("training", {})
    for fam in ("roberta", "bart"):
        x = t.get(fam)
        if x and x["ratio"] < 0.9:
            lines.append(f"* training {fam}: an update costs {x['seconds_per_update']:.2f} s against "
                         f"{x['stock_seconds_per_update']:.2f} s for the stock objective on the same batches. Both run the "
                         "same network through the same Trainer, so the difference is the objective's own work (item "
                         "building and collation in the main process, mimic_mse) or load on the machine; fairseq-train's "
                         "--num-workers moves collation off the critical path. Re-run `--only training` on a quiet machine.")
    p = r.get("predict", {})
    for fam in ("roberta", "bart"):
        if fam not in p:
            continue
        x = p[fam]["bound"]
        if x["ratio_to_bound"] < 0.8:
            lines.append(f"* predict {fam} vs the bound: {x['tokens_per_s']:,.0f} against {x['bound_tokens_per_s']:,.0f} "
                         f"tokens/s over {x['batches']} batches. What the bound does not pay is item building and collation "
                         "per batch and the float64 accumulation; with the profile showing them small on a quiet machine, a "
                         "miss is load on the shared cores. Collating the next batch in a background worker (fairseq's "
                         "iterator with num_workers) would hide the rest where a core is free.")
        x = p[fam]["speed"]
        if x["speedup_vs_one_token_at_a_time"] < 5:
            rates = (f" Batch 1 runs at {x['one_token_at_a_time_flops_per_s'] / 1e9:.0f} GFLOP/s, our batches at "
                     f"{x['achieved_flops_per_s'] / 1e9:.0f}: on {r['torch_threads']} CPU threads a single "
                     f"~{x['tokens'] / x['items']:.0f}-token prompt "
                     "already keeps the matmul kernels busy, so batching can only buy that ratio"
                     if "one_token_at_a_time_flops_per_s" in x else "")
            why = ("an encoder's work does not shrink (one masked copy of the prompt per subword, each a full pass but "
                   "for the last layer's unread rows)" if fam == "roberta" else
                   "one teacher-forced pass per prompt replaces its prefix passes, the rest is batching")
            lines.append(f"* predict {fam} vs one token at a time: {x['speedup_vs_one_token_at_a_time']:.1f}x "
                         f"({x['tokens_per_s']:,.0f} against {x['tokens'] / x['one_token_at_a_time_seconds']:,.0f} tokens/s "
                         f"at batch 1): {why}.{rates}. In these small corpora one batch also spans many lengths "
                         f"({x['padding_share']:.0%} of its encoder positions are padding), which only ours pays; a whole "
                         "vocabulary fills each length's own batches. What would close it: a GPU, where batch 1 is bound "
                         "by kernel launches rather than arithmetic; on a CPU, exact sharing between the copies is "
                         "limited to the first layer's query, key and value projections of the unmasked positions "
                         f"(~{2 * 3 * (WIDTH * WIDTH + WIDTH) / x['flops_per_token']:.0%} of the work), and masking a whole "
                         "variant span at once or bf16 matmuls would change the outputs.")
    i = r.get("isotropy", {})
    if "fast_seconds" in i and (i["fast_seconds"] > ISOTROPY_SECONDS or i["speedup_vs_naive"] < 10):
        w, e = i.get("necessary_work_seconds"), i.get("eig_threads_all_group")
        floor = (f" What any exact implementation must do takes {w['sum']:.2f} s at this CPU's rates, measured in the "
                 f"same run: the float64 Gram matrices {w['gram']:.2f} s (their chunk products side by side, one thread "
                 f"each), four numpy.linalg.eig, one thread each, side by side {w['eig_float64']:.2f} s, the projections "
                 f"of every row on 2 x d directions {w['projections']:.2f} s (one float32 matrix product at the peak "
                 f"rate); {i['fast_seconds'] - w['sum']:.2f} s is left for the exp and sums over the projections." if w else "")
        threads = (f" The paper's figure scores each eigenvector with the sign eig returns, and on two OpenBLAS threads "
                   f"{e['eigenvectors_differing']} of the {e['dim']:,} eigenvectors of the \"all\" Gram came back "
                   f"otherwise ({e['of_which_sign_flipped']} with the other sign; {e['two_threads_seconds']:.2f} s against "
                   f"{e['one_thread_seconds']:.2f} s on one): each eig stays on one thread, the four share the two cores."
                   if e else "")
        lines.append(f"* isotropy: {i['fast_seconds']:.2f} s, {i['speedup_vs_naive']:.0f}x the naive implementation "
                     f"({i['naive_seconds_extrapolated']:.0f} s).{floor}{threads} Every figure keeps the bits it had, so "
                     "each Gram stays the sum of its own row chunks in order: the Gram of \"all\" summed from the "
                     "groups', or the report's \"after\" Grams updated by the changed rows, would round otherwise and "
                     "can flip eig's signs. What would close it: more cores (the eigs and the chunk products are "
                     "independent) or a GPU for the products; a symmetric eigh is ~4x faster than eig at d = 1,024 but "
                     "returns other signs, so only the sign-invariant figure could use it.")
    s = r.get("surgery", {})
    if s.get("target_shape"):
        x = s[s["target_shape"]]
        report = x["definitionemb_alpha100"]["seconds"] - x["definitionemb_alpha100_no_isotropy"]["seconds"]
        imports = x.get("import_seconds")
        start_up = (f" Start-up: importing the tool takes {imports['defemb_surgery']:.1f} s against "
                    f"{imports['torch']:.1f} s for the baseline's torch." if imports else "")
        for method in ("definitionemb_alpha100", "definitionemb_alpha100_no_isotropy", "deldirection"):
            m = x[method]
            if m["time_ratio"] > SURGERY_RATIO[method] or m["peak_rss_over_file"] > 2.2:
                part = (f"; the isotropy report (I(E) per frequency group before and after) is {report:.1f} s of it"
                        if method != "definitionemb_alpha100_no_isotropy" else "")
                lines.append(f"* surgery {method} ({x['parameters'] / 1e6:.0f}M parameters): {m['seconds']:.1f} s, "
                             f"{m['time_ratio']:.2f}x a bare load + save of {x['load_save_seconds']:.1f} s{part}; peak RSS "
                             f"{m['peak_rss_over_file']:.2f}x the file (a bare load + save "
                             f"{x['load_save_peak_rss_over_file']:.2f}x).{start_up}")
        if lines and lines[-1].startswith("* surgery"):
            lines.append("  What would close it: writing is already a kernel copy with only the embedding's bytes "
                         "patched, and the tool does not import fairseq (it reads dict.txt and the task's .bin/.idx "
                         "itself), so what remains is the report: two isotropy passes at the isotropy floor above (at "
                         "alpha 100 every row changes, so no Gram chunk is shared between them). The \"before\" pass is "
                         "the same for every method, alpha and seed of a checkpoint: caching it, keyed by the "
                         "embedding's bytes and the library versions (eig's signs depend on them), would remove one "
                         "pass from every run but the first; `--no-isotropy` removes both.")
    lines += scale_misses(r.get("scale", {}))
    lines += gpu_misses(r.get("gpu", {}))
    c = r.get("corpus", {})
    if c.get("seconds_2_workers", 0) > 120:
        lines.append(f"* corpus: {c['seconds_2_workers']:.0f} s with 2 workers; see the scaling line for the fixed part.")
    return "\n".join(lines) or "* none: every target of the table is met in this run."


def scale_misses(x: dict) -> list[str]:
    """Why each missed bound of the scale stage missed, from the run's own breakdown."""
    if "at_largest" not in x:
        return []
    p, b, lines = x["at_largest"], x["bounds"], []
    workers = " + ".join(f"{w:.0f}" for w in p["corpus"]["cpu_seconds_workers"])
    load = p.get("load_average_1min")
    loaded = (f" The 1-minute load average was {load['start']:.1f} to {load['end']:.1f} on {load['cores']} cores during "
              "this size" if load else "")
    c = p["corpus"]
    if c["seconds"] > b["corpus_seconds"] or c["peak_rss_bytes"] > b["corpus_peak_rss_gb"] * 1024 ** 3:
        lines.append(f"* scale corpus: {c['seconds']:.0f} s, peak {c['peak_rss_bytes'] / 1024 ** 3:.2f} GB for "
                     f"{c['prompts']:,} prompts.{loaded}: the build's own processes used {c['cpu_seconds']:.0f} CPU "
                     f"seconds (main {c['cpu_seconds_main']:.0f}, the 2 workers {workers}), so on 2 free cores it would "
                     f"take at least {c['two_free_cores_seconds_lower_bound']:.0f} s (the larger of the main process's "
                     "share and half the workers'), the rest of the wall time being other jobs'. The main process reads "
                     "the JSONL, then keeps every prompt in memory for coverage and the split and writes them alone.")
    for corruption, name in SCALE_MODELS:
        t = p[f"train_{corruption}"]
        if t["data_share_of_gpu_step"] > b["data_share_of_gpu_step"]:
            why = ("each prompt's corruption is drawn from its own generator seeded by (seed, epoch, index), as fairseq's "
                   "numpy_seed did per item, so the draws stay those of the per-item code: a seeding per prompt "
                   if corruption == "bert" else "collation ")
            lines.append(f"* scale {name}: an epoch's data work is {t['data_share_of_gpu_step']:.1%} of the assumed GPU "
                         f"step ({t['collate_seconds_per_batch'] * 1e3:.2f} ms collation, {t['replan_seconds']:.1f} s "
                         f"re-plan per epoch over {t['batches']:,} batches): {why}on this loaded CPU.{loaded}. It runs "
                         "in fairseq-train's DataLoader worker beside the GPU, so the GPU waits only past 100%.")
        if t["startup_seconds"] > b["startup_seconds"]:
            lines.append(f"* scale {name} start-up: {t['startup_seconds']:.1f} CPU seconds (load "
                         f"{t['load_wall_seconds']:.1f} s of wall).{loaded}.")
    for corruption, name in SCALE_MODELS:
        q = p[f"predict_{corruption}"]
        if q["non_model_seconds"] > b["predict_non_model_seconds"]:
            lines.append(f"* scale predict {name}: {q['non_model_seconds']:.0f} s of non-model work for {q['items']:,} "
                         f"items in {q['batches']:,} batches (table + plan {q['table_and_plan_seconds']:.1f} s; the rest "
                         f"is per batch, {(q['non_model_seconds'] - q['table_and_plan_seconds']) / q['batches'] * 1e3:.2f} ms "
                         f"each).{loaded}.")
    return lines


def gpu_rows(x: dict) -> list[tuple[str, str, str, str, str]]:
    """The gpu stage's one target: the whole stage within its time limit."""
    if "steps" not in x:
        return []
    ok = sum(step["status"] == "ok" for step in x["steps"].values())
    where = x["device_name"] if x["gpu_measured"] else "CPU: no CUDA, tiny shapes, no GPU figure measured"
    return [(f"gpu stage ({where})", "wall seconds of the whole stage (fixtures, training, prediction; each step in its "
             "own process with its own time limit)", f"{x['stage_seconds']:.0f} s ({ok} of {len(x['steps'])} steps ok)",
             f"<= {x['time_limit_seconds']} s", status(x["stage_seconds"], x["time_limit_seconds"], False))]


def flops_rate(flops_per_s: float) -> str:
    return f"{flops_per_s / 1e12:.0f} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.1f} GFLOP/s"


def gpu_text(r: dict) -> str:
    """The gpu stage's figures: the device, each training and prediction rate against the device's peak,
    and the paper's scale at the measured rates beside the FLOP-count estimate."""
    x, ps = r["gpu"], r.get("paper_scale", {})
    gb = 1024 ** 3
    peak = x.get("peak_tflops")
    if x["gpu_measured"]:
        info = next(iter([*x["train"].values(), *x["predict"].values()]))
        peaks = (f"dense peaks from the table's `{peak['pattern']}` entry: " + ", ".join(
            f"{k} {v} TFLOP/s" for k, v in peak.items() if k != "pattern") if peak else
                 "no dense peak in the table for this device: shares of peak left out")
        lines = [f"* {x['device_name']} (torch {info['torch']}, CUDA {info['cuda']}, compute capability "
                 f"{info['capability']}, {info['memory_bytes'] / gb:.0f} GB); {peaks}"]
    else:
        lines = [f"* **{x['note']}** ({', '.join(x['shapes'].values())}): the rates below are that smoke run's, "
                 "not GPU figures."]

    def share(y: dict) -> str:
        return f" = {y['share_of_peak']:.0%} of the {y['precision']} dense peak" if "share_of_peak" in y else ""

    for key, y in x["train"].items():
        if "skipped" in y:
            lines.append(f"* training {key}: not run ({y['skipped']})")
            continue
        fits = "Table 12's batch" if y["fits_table12_batch"] else f"Table 12's {y['table12_max_tokens']:,} did not fit"
        dropped = (f", {y['overflow_skipped_updates']} dropped by fp16 overflow" if y["overflow_skipped_updates"] else "")
        lines.append(f"* training {y['shape']}, {y['precision']}, --max-tokens {y['max_tokens']:,} ({fits}): "
                     f"{y['seconds_per_update'] * 1e3:.0f} ms per update (~{y['prompts_per_update']:.0f} prompts), "
                     f"{y['prompt_tokens_per_s']:,.0f} prompt tokens/s, {flops_rate(y['achieved_flops_per_s'])}"
                     f"{share(y)}; peak memory {y['peak_memory_bytes'] / gb:.1f} GB ({y['memory']}); {y['updates']} "
                     f"timed updates after {y['warmup_updates']} of warm-up{dropped}")
    for y in x["predict"].values():
        lines.append(f"* prediction {y['shape']}, float32 (defemb-predict): {y['prompts']:,} prompts ({y['items']:,} "
                     f"items, {y['tokens']:,} tokens) in {y['seconds']:.1f} s: {y['prompts_per_s']:,.0f} prompts/s, "
                     f"{y['tokens_per_s']:,.0f} tokens/s, {flops_rate(y['achieved_flops_per_s'])}{share(y)}; peak memory "
                     f"{y['peak_memory_bytes'] / gb:.1f} GB")
    hours = x.get("paper_scale_gpu_hours")
    if hours:
        def measured(prefix: str) -> str:
            return ", ".join(f"{k.rsplit('_', 1)[1]} **{v:.1f}**" for k, v in hours.items() if k.startswith(prefix))

        estimate = {"bart": ps.get("gpu_training_hours_estimate"),
                    "roberta": ps.get("gpu_training_hours_estimate_roberta_base")}
        for family, name, updates in (("bart", "BART-large", PAPER_UPDATES), ("roberta", "RoBERTa-base",
                                                                                ROBERTA_PAPER_UPDATES)):
            if any(k.startswith(f"training_{family}_") for k in hours):
                beside = (f" (the FLOP-count estimate: {estimate[family]:.1f} on one A100 at {GPU_UTILISATION:.0%})"
                          if estimate[family] else "")
                lines.append(f"* paper scale at these rates on this GPU: {name} training, {updates:,} updates of "
                             f"{TRAIN_MAX_TOKENS:,} tokens: {measured(f'training_{family}_')} GPU-hours{beside}")
        predicted = ", ".join(f"{name} **{hours[f'prediction_{family}'] * 60:.0f}** GPU-minutes" for family, name in
                              (("bart", "BART-large"), ("roberta", "RoBERTa-base")) if f"prediction_{family}" in hours)
        if predicted:
            beside = (f" (the FLOP-count estimate for BART-large: {ps['gpu_prediction_hours_estimate'] * 60:.0f})"
                      if "gpu_prediction_hours_estimate" in ps else "")
            lines.append(f"* paper scale at these rates: predicting {PAPER_DEFINITIONS:,} definitions: {predicted}{beside}")
    steps = "; ".join(f"{name} {step['seconds']:.0f} s" + ("" if step["status"] == "ok" else f" ({step['status']})")
                      if "seconds" in step else f"{name}: {step['status']}" for name, step in x["steps"].items())
    limits = ", ".join(f"{kind} {seconds} s" for kind, seconds in x["step_limits_seconds"].items())
    lines.append(f"* steps ({x['time_limit_seconds']} s for the stage; limits per step: {limits}): {steps}")
    return "\n".join(lines)


def gpu_misses(x: dict) -> list[str]:
    """The gpu stage past its time limit: its longest steps."""
    if "steps" not in x or x["stage_seconds"] <= x["time_limit_seconds"]:
        return []
    longest = sorted(((s.get("seconds", 0), name) for name, s in x["steps"].items()), reverse=True)[:3]
    return [f"* gpu stage: {x['stage_seconds']:.0f} s against its {x['time_limit_seconds']} s; the longest steps "
            + ", ".join(f"{name} {seconds:.0f} s" for seconds, name in longest) + ". Each step's limit is capped by "
            "what is left of the stage's time, so the excess is the stage's own work between steps; shorter steps "
            "(`STEP_LIMITS` and `SIZES` in bench_gpu.py) would close it."]


def write_readme(r: dict, readme: Path) -> None:
    ran = [stage for stage in STAGE_NAMES if stage in r]
    quick = [stage for stage in ran if r[stage].get("quick")]
    stamp = f"quick smoke run (`--quick`) of {', '.join(quick)}: not the reference figures" if quick else "full run"
    seconds = sum(r[stage]["stage_seconds"] for stage in ran)
    # `--only` re-runs some stages and keeps the others' figures: say when each was measured.
    dates: dict[str, list[str]] = {}
    for stage in ran:
        dates.setdefault(r[stage].get("measured", "on a date not recorded"), []).append(stage)
    when = "; ".join(f"{', '.join(stages)} measured {date}" for date, stages in sorted(dates.items()))
    surgery = r.get("surgery", {}).get(r.get("surgery", {}).get("target_shape"), {})
    if "load_average_1min" in surgery:  # the one stage that records it: its ratios are the most load-sensitive
        load = surgery["load_average_1min"]
        when += f"; surgery at a 1-minute load average of {load['start']:.1f} to {load['end']:.1f}"
    gpu = f"On the GPU (stage gpu):\n\n{gpu_text(r)}\n\n" if "gpu" in r else ""
    body = (f"{stamp} ({when}); {r['torch_threads']} torch threads, {seconds / 60:.0f} min of stages.\n\n{table(r)}\n"
            f"Cost against input size (exponent of a log-log fit over the sizes run):\n\n{scaling_text(r)}\n\n"
            f"FLOPs, checked against this CPU, and the paper's scale:\n\n{flops_text(r)}\n\n{gpu}"
            f"Missed targets, why, and what would close them:\n\n{misses_text(r)}\n")
    text = readme.read_text() if readme.exists() else "# Benchmarks\n\n<!-- results -->\n<!-- /results -->\n"
    head, _, rest = text.partition("<!-- results -->")
    _, _, tail = rest.partition("<!-- /results -->")
    write_text(readme, f"{head}<!-- results -->\n{body}<!-- /results -->{tail}")

