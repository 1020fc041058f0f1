"""A BERT-family model in Hugging Face layout -> a stock fairseq RoBERTa (the library behind ``defemb-convert-hf``).

    defemb-convert-hf --model-dir DIR --out minilm-fairseq/ [--verify] [--overwrite]

DIR holds ``config.json``, ``model.safetensors`` and ``vocab.txt``. The output directory
(``model.pt`` + ``dict.txt`` + ``conversion.json``), written atomically, loads with
``RobertaModel.from_pretrained(out, checkpoint_file="model.pt")``,
``checkpoint_utils.load_checkpoint_to_cpu`` and ``fairseq-train --restore-file`` like
``roberta.base``. The fairseq model is built by fairseq itself (``--task masked_lm --arch
roberta_base`` with the BERT dimensions) and the converted weights load with strict=True.

dict.txt
  The WordPiece strings of vocab.txt in vocab.txt order (vocab.txt is read the way
  transformers' BertTokenizer reads it: one token per line, only the newline removed),
  except BERT's specials, which map to fairseq's: [CLS] -> <s>, [PAD] -> <pad>,
  [SEP] -> </s>, [UNK] -> <unk> (ids 0-3) and [MASK] -> <mask>, which fairseq's masked_lm
  appends last. So vocab.txt line k (HF id k) lands at fairseq id 4 + (number of
  non-special lines before it). The count column is rank-derived (len(vocab) - rank,
  descending as fairseq expects), NOT corpus counts: vocab.txt has none.
  Awkward strings are handled explicitly: tokens containing whitespace (or empty) are
  written verbatim, which fairseq's ``<token> <count>`` format (split at the LAST space)
  reads back intact; a token repeated in vocab.txt keeps its own row and gets fairseq's
  ``#fairseq:overwrite`` flag, so the string resolves to its last occurrence in both
  fairseq and BertTokenizer; a token literally equal to a fairseq special (<s>, <pad>,
  </s>, <unk>, <mask>) or a repeated BERT special is an error naming vocab.txt:line.
  dict.txt is reloaded after writing and checked row by row.

Weights
  * word embeddings are permuted into fairseq ids as above;
  * token-type embedding 0 (single-segment input) is added to every position embedding;
    HF position i is fairseq row i + 2 (fairseq offsets learned positions by
    padding_idx + 1). Row 0 is never indexed; row 1 is what <pad> tokens get: both zero;
  * embeddings.LayerNorm -> layernorm_embedding; no embedding scaling; post-LN layers
    (q/k/v/out_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm);
  * LM head: a BertForMaskedLM head (``cls.predictions.*``) is converted. Without one
    (sentence-transformers checkpoints) it is initialized deterministically: dense =
    identity with zero bias, LayerNorm gamma 1 / beta 0, output bias 0, output weight tied
    to the embeddings (as always in fairseq RoBERTa);
  * dropped: the pooler (fairseq RoBERTa has none) and the NSP head.

LayerNorm epsilon
  BERT uses 1e-12, fairseq's LayerNorm 1e-5 and does not expose it. ``--verify`` runs
  transformers' BertModel on a few sentences twice, at BERT's epsilon and at 1e-5, and
  reports both maximum absolute differences of the final hidden states: the second
  isolates the conversion (float rounding), the first adds the epsilon effect
  (about 1e-3 on all-MiniLM-L6-v2).
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.convert.hf_common import (
    ACTIVATIONS, BERT_LAYER_KEYS, FAIRSEQ_LAYER_NORM_EPS, IDENTITY_HEAD_NOTE, POSITION_OFFSET, ConversionError,
    TensorSource, complete_fairseq_state, identity_lm_head, read_json_object, read_safetensors, require_files,
    sha256,
)
from fairseq_defemb.convert.hf_roberta import ENC, HEAD, check_encoder_config, roberta_options
from fairseq_defemb.data.vocabulary import MASK_SYMBOL, load_model_dictionary

BERT_TO_FAIRSEQ_SPECIALS = {"[CLS]": "<s>", "[PAD]": "<pad>", "[SEP]": "</s>", "[UNK]": "<unk>", "[MASK]": "<mask>"}
FAIRSEQ_SPECIAL_IDS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
FAIRSEQ_SYMBOLS = {"<s>", "<pad>", "</s>", "<unk>", MASK_SYMBOL}
OVERWRITE_FLAG = "#fairseq:overwrite"
REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
IGNORED_PREFIXES = ("pooler.", "cls.seq_relationship.")
IGNORED_KEYS = {"embeddings.position_ids"}

# -- reading the Hugging Face directory ---------------------------------------------

def read_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    config = read_json_object(path)
    if config.get("model_type") != "bert":
        raise ConversionError(f"{path}: model_type {config.get('model_type')!r}; only BERT-family models "
                              "(model_type 'bert') convert")
    check_encoder_config(config, path)
    return config


def read_vocab(path: Path) -> list[str]:
    """vocab.txt exactly as transformers' BertTokenizer reads it: line k is the token of id k."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as err:
        raise ConversionError(f"{path}: not UTF-8 ({err})") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    # BertForMaskedLM / BertForPreTraining prefix the encoder with "bert."; BertModel does not.
    return {k: v.float() for k, v in read_safetensors(path, "bert.").items()}


def read_hf_dir(model_dir: Path) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    require_files(model_dir, REQUIRED_FILES)
    config = read_config(model_dir)
    vocab = read_vocab(model_dir / "vocab.txt")
    if len(vocab) != config["vocab_size"]:
        raise ConversionError(f"{model_dir / 'vocab.txt'}: {len(vocab)} lines but {model_dir / 'config.json'} says "
                              f"vocab_size {config['vocab_size']}")
    return config, read_weights(model_dir / "model.safetensors"), vocab


# -- the dict.txt rule ------------------------------------------------------------------

@dataclass
class DictionaryPlan:
    lines: list[str]  # dict.txt
    rows: list[int]  # fairseq id of vocab.txt line k (= HF id k)
    symbols: list[str]  # fairseq symbol of vocab.txt line k
    duplicates: list[str] = field(default_factory=list)  # "line N: 'tok' (also line M)"
    unusual: list[str] = field(default_factory=list)  # whitespace/empty tokens written verbatim

    def fairseq_ids(self, hf_ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.rows)[hf_ids]


def plan_dictionary(vocab: list[str], vocab_path: Path) -> DictionaryPlan:
    special_lines: dict[str, int] = {}
    for lineno, token in enumerate(vocab, 1):
        if token in BERT_TO_FAIRSEQ_SPECIALS:
            if token in special_lines:
                raise ConversionError(f"{vocab_path}:{lineno}: BERT special {token} repeats line {special_lines[token]}")
            special_lines[token] = lineno
    missing = [s for s in BERT_TO_FAIRSEQ_SPECIALS if s not in special_lines]
    if missing:
        raise ConversionError(f"{vocab_path}: lacks {', '.join(missing)}; not a BERT WordPiece vocabulary")
    n_words = len(vocab) - len(BERT_TO_FAIRSEQ_SPECIALS)
    plan = DictionaryPlan(lines=[], rows=[], symbols=[])
    first_line: dict[str, int] = {}
    for rank, token in enumerate(vocab):
        lineno = rank + 1
        if token in BERT_TO_FAIRSEQ_SPECIALS:
            symbol = BERT_TO_FAIRSEQ_SPECIALS[token]
            plan.rows.append(FAIRSEQ_SPECIAL_IDS.get(symbol, len(FAIRSEQ_SPECIAL_IDS) + n_words))
            plan.symbols.append(symbol)
            continue
        if token in FAIRSEQ_SYMBOLS:
            raise ConversionError(f"{vocab_path}:{lineno}: token {token!r} is literally a fairseq special symbol; it "
                                  "would collide with the one BERT's specials map to. Rename it in vocab.txt.")
        line = f"{token} {len(vocab) - rank}"
        if token in first_line:
            line += f" {OVERWRITE_FLAG}"
            plan.duplicates.append(f"line {lineno}: {token!r} (also line {first_line[token]})")
        else:
            first_line[token] = lineno
        if not token or token != token.strip() or any(c.isspace() for c in token):
            plan.unusual.append(f"line {lineno}: {token!r}")
        plan.rows.append(len(FAIRSEQ_SPECIAL_IDS) + len(plan.lines))
        plan.symbols.append(token)
        plan.lines.append(line)
    return plan


def check_dictionary(plan: DictionaryPlan, dict_path: Path) -> None:
    """Reload dict.txt as every tool here does and check each vocab.txt line's row."""
    dictionary = load_model_dictionary(dict_path)
    if len(dictionary) != len(plan.rows):
        raise RuntimeError(f"{dict_path}: {len(dictionary)} symbols after loading, expected {len(plan.rows)}")
    last_row = {}
    for row, symbol in zip(plan.rows, plan.symbols):
        if dictionary[row] != symbol:
            raise RuntimeError(f"{dict_path}: row {row} is {dictionary[row]!r}, expected {symbol!r}")
        last_row[symbol] = row
    for symbol, row in last_row.items():
        if dictionary.index(symbol) != row:
            raise RuntimeError(f"{dict_path}: {symbol!r} resolves to {dictionary.index(symbol)}, expected {row}")


# -- weights ----------------------------------------------------------------------------

def convert_state(config: dict, hf: dict[str, torch.Tensor], plan: DictionaryPlan, fairseq_state: dict,
                  weights_path: Path = Path("model.safetensors")) -> tuple[dict, dict]:
    """Map the HF tensors onto fairseq RoBERTa's state dict; return ``(state, notes)``."""
    src = TensorSource(hf, weights_path, f"config.json says {config['num_hidden_layers']} layers of width "
                                         f"{config['hidden_size']}")
    take = src.take
    out: dict[str, torch.Tensor] = {}
    rows = torch.tensor(plan.rows)
    words = take("embeddings.word_embeddings.weight")
    embed = torch.zeros_like(fairseq_state[ENC + "embed_tokens.weight"])
    if words.shape != embed.shape:
        raise ConversionError(f"{weights_path}: word embeddings {tuple(words.shape)}, expected {tuple(embed.shape)}")
    embed[rows] = words
    out[ENC + "embed_tokens.weight"] = embed

    hf_positions = take("embeddings.position_embeddings.weight")
    token_type = "embeddings.token_type_embeddings.weight" in src
    if token_type:
        hf_positions = hf_positions + take("embeddings.token_type_embeddings.weight")[0]
    positions = torch.zeros_like(fairseq_state[ENC + "embed_positions.weight"])
    if hf_positions.size(0) != positions.size(0) - POSITION_OFFSET:
        raise ConversionError(f"{weights_path}: {hf_positions.size(0)} position embeddings, config.json says "
                              f"max_position_embeddings {config['max_position_embeddings']}")
    positions[POSITION_OFFSET:] = hf_positions
    out[ENC + "embed_positions.weight"] = positions
    out[ENC + "layernorm_embedding.weight"] = take("embeddings.LayerNorm.weight")
    out[ENC + "layernorm_embedding.bias"] = take("embeddings.LayerNorm.bias")
    for layer in range(config["num_hidden_layers"]):
        for ours, theirs in BERT_LAYER_KEYS.items():
            for param in ("weight", "bias"):
                out[f"{ENC}layers.{layer}.{ours}.{param}"] = take(f"encoder.layer.{layer}.{theirs}.{param}")

    if "cls.predictions.transform.dense.weight" in hf:
        out[HEAD + "dense.weight"] = take("cls.predictions.transform.dense.weight")
        out[HEAD + "dense.bias"] = take("cls.predictions.transform.dense.bias")
        out[HEAD + "layer_norm.weight"] = take("cls.predictions.transform.LayerNorm.weight")
        out[HEAD + "layer_norm.bias"] = take("cls.predictions.transform.LayerNorm.bias")
        bias_key = "cls.predictions.bias" if "cls.predictions.bias" in hf else "cls.predictions.decoder.bias"
        bias = torch.zeros(embed.size(0))
        bias[rows] = take(bias_key)
        src.take_tied("cls.predictions.decoder.bias", hf[bias_key], bias_key)
        src.take_tied("cls.predictions.decoder.weight", words, "the word embeddings")
        out[HEAD + "bias"] = bias
        head = "converted from cls.predictions (BertForMaskedLM)"
    else:
        out.update({HEAD + k: v for k, v in identity_lm_head(config["hidden_size"], embed.size(0)).items()})
        head = IDENTITY_HEAD_NOTE
    out[HEAD + "weight"] = embed  # tied, as in every fairseq RoBERTa

    src.leftover(IGNORED_KEYS, IGNORED_PREFIXES)
    complete_fairseq_state(out, fairseq_state, weights_path)
    notes = {
        "lm_head": head,
        "token_type_folded": token_type,
        "dropped": sorted({k.split(".")[0] + "." + k.split(".")[1] for k in hf
                           if k.startswith(IGNORED_PREFIXES) or k in IGNORED_KEYS}),
    }
    return out, notes


def fairseq_options(config: dict) -> list[str]:
    return roberta_options(config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"],
                           config["num_attention_heads"], config["max_position_embeddings"],
                           ACTIVATIONS[config.get("hidden_act", "gelu")], config.get("hidden_dropout_prob", 0.1),
                           config.get("attention_probs_dropout_prob", 0.1))


def convert(model_dir: str | Path, out: str | Path, overwrite: bool = False, verify: bool = False,
            sentences: list[str] | None = None) -> dict:
    """Convert ``model_dir`` into ``out`` (atomically) and return the conversion report.

    ``verify`` compares against transformers' BertModel before the output is moved into
    place, so ``conversion.json`` carries the measured differences."""
    # fairseq's builders, imported here: the command's --help and option errors do not need fairseq.
    from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model, save_model_checkpoint

    model_dir = Path(model_dir)
    out = Path(out)
    config, hf, vocab = read_hf_dir(model_dir)
    plan = plan_dictionary(vocab, model_dir / "vocab.txt")
    if out.exists() and not overwrite:  # fail before the (slow) build; atomic_output_dir checks again
        raise FileExistsError(f"{out}: output directory exists; pick a new --out or pass --overwrite")
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "dict.txt").write_text("".join(f"{line}\n" for line in plan.lines), encoding="utf-8")
        check_dictionary(plan, tmp / "dict.txt")
        task, model, cfg = build_pretraining_model(tmp, "masked_lm", "roberta_base", fairseq_options(config))
        m = cfg.model
        assert not m.encoder_normalize_before and m.layernorm_embedding and m.no_scale_embedding, \
            "fairseq's roberta_base is no longer post-LN with an embedding LayerNorm and unscaled embeddings"
        if task.source_dictionary.symbols != load_model_dictionary(tmp / "dict.txt").symbols:
            raise RuntimeError("masked_lm built a different dictionary than load_model_dictionary")
        state, notes = convert_state(config, hf, plan, model.state_dict(), model_dir / "model.safetensors")
        model.load_state_dict(state, strict=True)
        # The task's data directory is the final one (where dict.txt will be), not the temporary one.
        cfg.task.data = str(out.resolve())
        save_model_checkpoint(model, cfg, tmp / "model.pt")
        report = {
            "source": str(model_dir.resolve()),
            "source_sha256": {name: sha256(model_dir / name) for name in REQUIRED_FILES},
            "layers": config["num_hidden_layers"], "hidden": config["hidden_size"],
            "heads": config["num_attention_heads"], "ffn": config["intermediate_size"],
            "max_positions": config["max_position_embeddings"], "activation_fn": m.activation_fn,
            "vocabulary": len(task.source_dictionary), "parameters": sum(p.numel() for p in model.parameters()),
            "dict_txt": ("vocab.txt order without [PAD] [UNK] [CLS] [SEP] [MASK] (-> <pad> <unk> <s> </s>, <mask> "
                         "appended last); counts are rank-derived (len(vocab) - rank), not corpus counts"),
            "duplicate_tokens": plan.duplicates, "whitespace_or_empty_tokens": plan.unusual,
            "positions": "HF position i -> fairseq row i + 2 (+ token-type 0); rows 0-1 zero (row 1 is <pad>'s)",
            **notes,
            "hf_layer_norm_eps": config.get("layer_norm_eps", 1e-12), "fairseq_layer_norm_eps": FAIRSEQ_LAYER_NORM_EPS,
        }
        if verify:
            # Flat keys: examples/demo.py reads max_abs_difference(_same_eps) from conversion.json.
            report.update(verify_against_transformers(model_dir, tmp, sentences or VERIFY_SENTENCES, config))
        (tmp / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# -- the reference comparison -------------------------------------------------------------

VERIFY_SENTENCES = [
    "The sediment settled at the bottom of the river.",
    "A quagga is an extinct subspecies of the plains zebra, last seen in 1883.",
    "Definitions give rare tokens their meaning; café, naïve and Zürich keep accents?",
    "Hello!",
]


def compare_with_transformers(model_dir: str | Path, out: str | Path, sentences: list[str],
                              layer_norm_eps: float | None = None) -> dict:
    """Run transformers (the original weights) and the converted fairseq model on ``sentences``.

    Each sentence alone and all of them as one right-padded batch (pad positions are not
    compared). ``layer_norm_eps`` overrides the reference's epsilon (1e-5 = fairseq's
    isolates the conversion from the one thing fairseq cannot reproduce). Returns the max
    absolute differences of the final hidden states (``hidden``), of the MLM logits when
    the source has a head (``logits``), the largest |hidden state| and the smallest cosine
    of mean-pooled sentence vectors (sentence-transformers' pooling)."""
    from fairseq.models.roberta import RobertaModel
    from transformers import BertForMaskedLM, BertModel, BertTokenizerFast

    from fairseq_defemb import allow_fairseq_checkpoints

    allow_fairseq_checkpoints()

    model_dir = Path(model_dir)
    config, hf_state, vocab = read_hf_dir(model_dir)
    plan = plan_dictionary(vocab, model_dir / "vocab.txt")
    has_head = "cls.predictions.transform.dense.weight" in hf_state
    overrides = {} if layer_norm_eps is None else {"layer_norm_eps": layer_norm_eps}
    tokenizer = BertTokenizerFast.from_pretrained(str(model_dir), local_files_only=True)
    reference_cls = BertForMaskedLM if has_head else BertModel
    reference = reference_cls.from_pretrained(str(model_dir), local_files_only=True, **overrides).eval()
    ours = RobertaModel.from_pretrained(str(out), checkpoint_file="model.pt", bpe=None).model.eval()
    pad = ours.encoder.dictionary.pad()
    batches = [tokenizer([s], return_tensors="pt") for s in sentences]
    batches.append(tokenizer(sentences, return_tensors="pt", padding=True))
    result = {"hidden": 0.0, "logits": None, "max_abs_hidden": 0.0, "min_cosine_mean_pooled": 1.0}
    for batch in batches:
        mask = batch["attention_mask"].bool()
        fs_ids = plan.fairseq_ids(batch["input_ids"]).masked_fill(~mask, pad)
        with torch.no_grad():
            if has_head:
                hf_out = reference(**batch, output_hidden_states=True)
                expected, expected_logits = hf_out.hidden_states[-1], hf_out.logits
            else:
                expected = reference(**batch).last_hidden_state
            got_logits, extra = ours(fs_ids, return_all_hiddens=True)
            got = extra["inner_states"][-1].transpose(0, 1)
        result["hidden"] = max(result["hidden"], (expected - got).abs()[mask].max().item())
        result["max_abs_hidden"] = max(result["max_abs_hidden"], expected.abs()[mask].max().item())
        m = mask.unsqueeze(-1).float()
        cos = torch.nn.functional.cosine_similarity((expected * m).sum(1), (got * m).sum(1), dim=-1)
        result["min_cosine_mean_pooled"] = min(result["min_cosine_mean_pooled"], cos.min().item())
        if has_head:
            permuted = got_logits[..., torch.tensor(plan.rows)]  # fairseq logits in HF id order
            diff = (expected_logits - permuted).abs()[mask].max().item()
            result["logits"] = max(result["logits"] or 0.0, diff)
    return result


def reference_difference(model_dir: str | Path, out: str | Path, sentences: list[str],
                         layer_norm_eps: float | None = None) -> float:
    """Max |difference| of final hidden states: transformers' BertModel vs the converted model."""
    return compare_with_transformers(model_dir, out, sentences, layer_norm_eps)["hidden"]


def verify_against_transformers(model_dir: Path, out: Path, sentences: list[str], config: dict) -> dict:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return {"verify_skipped": "transformers is not importable"}
    original = compare_with_transformers(model_dir, out, sentences)
    same_eps = compare_with_transformers(model_dir, out, sentences, layer_norm_eps=FAIRSEQ_LAYER_NORM_EPS)
    return {
        "sentences": len(sentences),
        "max_abs_difference": original["hidden"],
        "max_abs_difference_same_eps": same_eps["hidden"],
        "max_abs_logit_difference": original["logits"],
        "max_abs_logit_difference_same_eps": same_eps["logits"],
        "max_abs_hidden_state": original["max_abs_hidden"],
        "min_cosine_mean_pooled": original["min_cosine_mean_pooled"],
        "verify_note": (f"reference run at the source's LayerNorm eps ({config.get('layer_norm_eps', 1e-12)}) and at fairseq's "
                 f"({FAIRSEQ_LAYER_NORM_EPS}); the second difference is the conversion alone"),
    }
