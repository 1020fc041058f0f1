"""FLOP counts from a model's shape, and the paper's scale (BART-large and RoBERTa-base at Table 12's settings,
Section 5.2) estimated from them, with the data path's share measured by the scale stage."""
from benchmarks.harness import TRAIN_MAX_TOKENS

# The paper's scale (Section 5.2, Table 12) and BART-large's shape.
PAPER_DEFINITIONS, PAPER_UPDATES = 1_455_715, 250_000
ROBERTA_PAPER_UPDATES = 400_000  # Table 12: RoBERTa 400k updates, BART 250k, both 4,096 tokens per batch
BASE_WIDTH, BASE_FFN, BASE_LAYERS = 768, 3072, 12  # RoBERTa-base
PAPER_TRAIN_HOURS, PAPER_GPUS = 8.4, 4  # the paper's reported training time (Section 5.2)
LARGE_WIDTH, LARGE_FFN, LARGE_LAYERS, LARGE_VOCAB = 1024, 4096, 12, 50265
# One GPU, for the paper-scale estimate only (nothing here ran on a GPU).
GPU_NAME, GPU_PEAK_FLOPS, GPU_UTILISATION = "A100 (bf16 dense peak)", 312e12, 0.35


def layer_params(d: int, ffn: int, cross: bool = False) -> int:
    """Weights and biases of one transformer layer that take part in matmuls (not the norms)."""
    attn = 4 * d * d + 4 * d
    return attn * (2 if cross else 1) + 2 * d * ffn + d + ffn


def flops_per_sequence(enc_params: int, enc_layers: int, src_len: float, d: int, dec_params: int = 0,
                       dec_layers: int = 0, tgt_len: float = 0, training: bool = True) -> float:
    """2 x params per token forward, plus attention: 4 x len x d per token and layer (QK^T and
    AV; the decoder's causal self-attention counted whole, cross-attention 4 x src_len x d per
    target token); training = 3x forward (the backward pass is 2x)."""
    forward = 2 * enc_params * src_len + 4 * enc_layers * src_len * src_len * d
    forward += 2 * dec_params * tgt_len + 4 * dec_layers * tgt_len * (tgt_len + src_len) * d
    return forward * (3 if training else 1)


def batch_flops(sample: dict, layers: int, d: int, ffn: int, encoder_decoder: bool, training: bool = True) -> float:
    """``flops_per_sequence`` of one collated batch at its padded shapes (every row as long as the
    longest) through a RoBERTa (encoder) or BART (encoder + decoder) of ``layers`` per side."""
    net = sample["net_input"]
    enc = layers * layer_params(d, ffn)
    if not encoder_decoder:
        return flops_per_sequence(enc, layers, net["src_tokens"].size(1), d, training=training) * sample["nsentences"]
    return flops_per_sequence(enc, layers, net["src_tokens"].size(1), d, layers * layer_params(d, ffn, cross=True), layers,
                              net["prev_output_tokens"].size(1), training=training) * sample["nsentences"]


def encoder_prediction_flops(layers: int, d: int, ffn: int, src_len: float) -> float:
    """One masked prompt through ``DefinitionEmbRobertaModel`` at inference: every layer but the
    last over all positions; the last only its keys and values there, and its query, attention
    output and feed-forward at the one read position; then W (d x d)."""
    lower = flops_per_sequence((layers - 1) * layer_params(d, ffn), layers - 1, src_len, d, training=False)
    keys_values = 2 * 2 * (d * d + d) * src_len
    read = 2 * (layer_params(d, ffn) - 2 * (d * d + d)) + 4 * src_len * d + 2 * d * d
    return lower + keys_values + read


def prediction_batch_flops(sample: dict, layers: int, d: int, ffn: int, encoder_decoder: bool) -> float:
    """FLOPs of ``DefinitionEmbRobertaModel`` / ``DefinitionEmbBartModel`` predicting one collated batch:
    RoBERTa as ``encoder_prediction_flops`` per row, BART the encoder and the teacher-forced decoder once
    per prompt, then W (d x d) at every predicted position."""
    if not encoder_decoder:
        return encoder_prediction_flops(layers, d, ffn, sample["net_input"]["src_tokens"].size(1)) * sample["nsentences"]
    return batch_flops(sample, layers, d, ffn, True, training=False) + 2 * d * d * sample["target"].numel()


def paper_scale(r: dict) -> dict:
    """FLOPs at the paper's scale from BART-large's shape, with the prompt lengths of GCIDE
    measured here, and what each stage would cost."""
    d, ffn, layers = LARGE_WIDTH, LARGE_FFN, LARGE_LAYERS
    n_enc, n_dec = layers * layer_params(d, ffn), layers * layer_params(d, ffn, cross=True)
    corpus = r.get("corpus", {})
    if "mean_prompt_tokens" not in corpus:
        return {}  # no measured prompt lengths (the corpus stage never ran): no estimate
    prompt, subwords, variants = corpus["mean_prompt_tokens"], corpus["mean_headword_subwords"], corpus["mean_variants"]
    src = prompt - subwords + variants  # each variant span -> one <mask>
    tgt = subwords + variants + 1  # <mask> c_1 .. c_n per variant, then </s>
    prompts_per_update = TRAIN_MAX_TOKENS / max(src, tgt)  # --max-tokens counts max(src, tgt) per prompt
    per_prompt_train = flops_per_sequence(n_enc, layers, src, d, n_dec, layers, tgt)
    train = PAPER_UPDATES * prompts_per_update * per_prompt_train
    predict = PAPER_DEFINITIONS * (flops_per_sequence(n_enc, layers, src, d, n_dec, layers, tgt, training=False)
                                   + 2 * d * d * subwords)
    gpu = GPU_PEAK_FLOPS * GPU_UTILISATION
    out = {"bart_large_matmul_params": n_enc + n_dec, "bart_large_params_with_embeddings": n_enc + n_dec + LARGE_VOCAB * d,
           "assumed_src_tokens": src, "assumed_tgt_tokens": tgt, "prompts_per_update": prompts_per_update,
           "training_flops_per_prompt_token": per_prompt_train / prompt,
           "training_flops": train, "prediction_flops": predict,
           "gpu": f"one {GPU_NAME} at {GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s x {GPU_UTILISATION:.0%} assumed utilisation",
           "gpu_training_hours_estimate": train / gpu / 3600, "gpu_prediction_hours_estimate": predict / gpu / 3600,
           "paper_training_gpu_hours": PAPER_TRAIN_HOURS * PAPER_GPUS}
    # RoBERTa-base at Table 12's settings: the whole prompt through the encoder, 4,096 tokens per update.
    n_base = BASE_LAYERS * layer_params(BASE_WIDTH, BASE_FFN)
    roberta_train = ROBERTA_PAPER_UPDATES * TRAIN_MAX_TOKENS / prompt * flops_per_sequence(n_base, BASE_LAYERS, prompt,
                                                                                          BASE_WIDTH)
    out.update(roberta_base_matmul_params=n_base, roberta_base_training_flops=roberta_train,
               gpu_training_hours_estimate_roberta_base=roberta_train / gpu / 3600)
    scale = r.get("scale", {}).get("at_largest")
    if scale:
        # The data path at the paper's scale (stage scale): per update, what the CPU does against the GPU step.
        for family, corruption, updates in (("bart", "sentinel", PAPER_UPDATES), ("roberta", "bert", ROBERTA_PAPER_UPDATES)):
            x = scale[f"train_{corruption}"]
            out[f"data_share_{family}"] = x["data_share_of_gpu_step"]
            out[f"data_cpu_hours_{family}"] = x["epoch_data_seconds_per_batch"] * updates / 3600
        out["data_one_off_seconds"] = {"corpus build (wall)": scale["corpus"]["seconds"],
                                       "corpus build (CPU, all processes)": scale["corpus"]["cpu_seconds"],
                                       "training start-up (CPU)": scale["train_sentinel"]["startup_seconds"],
                                       "prediction, non-model (CPU)": scale["predict_bert"]["non_model_seconds"]}
    achieved = r.get("training", {}).get("bart", {}).get("achieved_flops_per_s")
    if achieved:
        out["cpu_training_days_estimate"] = train / achieved / 86400
    if corpus.get("prompts"):
        out["corpus_seconds_estimate"] = corpus["seconds_2_workers"] / corpus["prompts"] * PAPER_DEFINITIONS
    stages = {"training (one GPU)": out["gpu_training_hours_estimate"] * 3600,
              "prediction (one GPU)": out["gpu_prediction_hours_estimate"] * 3600}
    if "corpus_seconds_estimate" in out:
        stages["corpus (2 CPU workers)"] = out["corpus_seconds_estimate"]
    out["dominant_stage"] = max(stages, key=stages.get)
    return out
