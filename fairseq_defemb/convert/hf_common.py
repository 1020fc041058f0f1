"""What every Hugging Face <-> fairseq converter here shares: reading the HF directory,
tracking which source tensors were used, checking the mapped state against the model
fairseq built, and the name tables both directions read.

No fairseq import here: the readers run before anything is built.
"""
import hashlib
import json
from pathlib import Path

import torch

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3 of every fairseq Dictionary
MASK = "<mask>"
FAIRSEQ_LAYER_NORM_EPS = 1e-5  # fairseq.modules.LayerNorm -> torch.nn.LayerNorm default
POSITION_OFFSET = 2  # fairseq's learned positions start at padding_idx (1) + 1
# HF hidden_act -> fairseq --activation-fn (same function; gelu_new is the tanh approximation).
ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_accurate",
               "gelu_pytorch_tanh": "gelu_accurate", "relu": "relu", "tanh": "tanh"}
# fairseq --activation-fn -> the HF name computing the same function.
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh"}
# fairseq TransformerEncoderLayer name -> HF BertLayer/RobertaLayer name.
BERT_LAYER_KEYS = {
    "self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm", "fc1": "intermediate.dense",
    "fc2": "output.dense", "final_layer_norm": "output.LayerNorm",
}


class ConversionError(ValueError):
    """The input is not a model this converter understands; the message names the file and the fix."""


class VerificationError(ConversionError):
    """--verify found a difference beyond tolerance; nothing was written. ``report`` says which."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def read_json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return value


def require_positive_ints(config: dict, keys: tuple[str, ...], path: Path) -> None:
    for key in keys:
        if not isinstance(config.get(key), int) or config[key] <= 0:
            raise ConversionError(f"{path}: {key} missing or not a positive integer ({config.get(key)!r})")


def require_files(model_dir: Path, names: tuple[str, ...], flag: str = "--model-dir") -> None:
    if not model_dir.is_dir():
        raise ConversionError(f"{model_dir}: {flag} is not a directory")
    for name in names:
        if not (model_dir / name).is_file():
            hint = ""
            if name == "model.safetensors" and (model_dir / "pytorch_model.bin").is_file():
                hint = (" (only pytorch_model.bin is there: re-save it with "
                        "model.save_pretrained(dir, safe_serialization=True))")
            raise ConversionError(f"{model_dir / name}: missing{hint}; {flag} must hold {', '.join(names)}")


def read_safetensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of ``path`` with ``prefix`` (e.g. the ``bert.`` of BertForMaskedLM) removed.

    Tensors keep their dtype: a bitwise HF -> fairseq -> HF round trip needs the source bits."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConversionError(f"{path}: not a readable safetensors file ({err})") from None
    return {k.removeprefix(prefix) if prefix else k: v for k, v in raw.items()}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TensorSource:
    """The source checkpoint's tensors; remembers which were used, so leftovers are an error."""

    def __init__(self, tensors: dict[str, torch.Tensor], path: Path, shape_hint: str):
        self.tensors, self.path, self.shape_hint, self.used = tensors, path, shape_hint, set()

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def take(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            raise ConversionError(f"{self.path}: tensor {key!r} missing ({self.shape_hint})")
        self.used.add(key)
        return self.tensors[key]

    def take_tied(self, key: str, reference: torch.Tensor, what: str) -> None:
        """A tied copy (saved or not): when present it must equal ``reference``."""
        if key in self.tensors:
            if not torch.equal(self.tensors[key].float(), reference.float()):
                raise ConversionError(f"{self.path}: {key} differs from {what}; fairseq ties them and cannot hold both")
            self.used.add(key)

    def leftover(self, ignored_keys: set[str] = frozenset(), ignored_prefixes: tuple[str, ...] = ()) -> None:
        left = sorted(k for k in self.tensors
                      if k not in self.used and k not in ignored_keys and not k.startswith(ignored_prefixes))
        if left:
            raise ConversionError(f"{self.path}: tensors this converter does not know where to put: "
                                  f"{', '.join(left[:8])}{' ...' if len(left) > 8 else ''}")


def complete_fairseq_state(out: dict[str, torch.Tensor], fairseq_state: dict[str, torch.Tensor],
                           weights_path: Path) -> dict[str, torch.Tensor]:
    """Check ``out`` covers every parameter of the model fairseq built, with its shape; add the
    version counters. Values keep the source dtype (load_state_dict casts)."""
    for key, value in fairseq_state.items():
        if key in out:
            if out[key].shape != value.shape:
                raise ConversionError(f"{weights_path}: {key} gets shape {tuple(out[key].shape)}, fairseq expects "
                                      f"{tuple(value.shape)}")
        elif key.endswith(".version"):
            out[key] = value  # fairseq's state-dict version counters
        else:
            raise RuntimeError(f"fairseq parameter {key} has no source; fairseq's model changed?")
    return out


def identity_lm_head(dim: int, vocab_size: int) -> dict[str, torch.Tensor]:
    """A masked-LM head for a source without one (fairseq RoBERTa always has it): dense =
    identity with zero bias, LayerNorm gamma 1 / beta 0, output bias 0 (weight tied)."""
    return {"dense.weight": torch.eye(dim), "dense.bias": torch.zeros(dim), "layer_norm.weight": torch.ones(dim),
            "layer_norm.bias": torch.zeros(dim), "bias": torch.zeros(vocab_size)}


IDENTITY_HEAD_NOTE = ("initialized (no MLM head in the source): dense = identity, dense bias 0, LayerNorm gamma 1 "
                      "beta 0, output bias 0, output weight tied to the embeddings")
