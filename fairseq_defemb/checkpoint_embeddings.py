"""Where the token embedding matrix lives in fairseq BART and RoBERTa checkpoints.

Weight tying means several state-dict entries hold the same matrix; surgery must
update all of them and analysis may read any one.
"""
from pathlib import Path
from typing import Any

import torch

# Every known key for the (tied) token embeddings, per architecture family. Old
# RoBERTa checkpoints (the released roberta.base among them) prefix the encoder with
# "decoder."; fairseq renames it on load, and we accept both.
TIED_EMBEDDING_KEYS = {
    "bart": ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"),
    "roberta": (
        "encoder.sentence_encoder.embed_tokens.weight",
        "encoder.lm_head.weight",
        "decoder.sentence_encoder.embed_tokens.weight",
        "decoder.lm_head.weight",
    ),
}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a fairseq checkpoint (a model.pt or its directory) memory-mapped on CPU.

    Memory-mapping reads only what is touched: rows surgery changes are copied on write,
    the rest of a 1.6 GB BART-large file never enters memory.
    """
    import fairseq_defemb  # noqa: F401  (safe globals for fairseq's pickled Namespace)

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (a fairseq model.pt)")
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except RuntimeError:  # legacy (non-zip) serialization cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a fairseq checkpoint (no 'model' state dict)")
    return state


def embedding_keys(model_state: dict[str, torch.Tensor]) -> list[str]:
    """The state-dict keys holding the token embedding matrix (all tied copies)."""
    for keys in TIED_EMBEDDING_KEYS.values():
        present = [k for k in keys if k in model_state]
        if present:
            return present
    raise KeyError(
        "no token embedding found; expected one of "
        + ", ".join(k for keys in TIED_EMBEDDING_KEYS.values() for k in keys)
    )


def read_embedding_matrix(checkpoint_path: str | Path) -> torch.Tensor:
    """The (|V|, d) input token embedding matrix of a fairseq BART/RoBERTa checkpoint."""
    state = load_checkpoint(checkpoint_path)["model"]
    try:
        key = embedding_keys(state)[0]
    except KeyError as err:
        raise KeyError(f"{checkpoint_path}: {err.args[0]}") from None
    return state[key].float()


def tied_embedding(model_state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> tuple[list[str], torch.Tensor]:
    """All keys of the tied token embedding and the matrix, checking the copies are equal.

    Raises ValueError naming ``source`` if there is no embedding or a copy differs
    (an untied checkpoint: surgery would have to choose which copy to trust).
    """
    try:
        keys = embedding_keys(model_state)
    except KeyError as err:
        raise ValueError(f"{source}: {err.args[0]}") from None
    matrix = model_state[keys[0]]
    for key in keys[1:]:
        other = model_state[key]
        if other.shape != matrix.shape or other.dtype != matrix.dtype or not torch.equal(other, matrix):
            raise ValueError(f"{source}: {key} differs from {keys[0]}; these copies must be tied (equal) for surgery")
    return keys, matrix


def write_embedding_rows(model_state: dict[str, torch.Tensor], keys: list[str], ids: torch.Tensor,
                         rows: torch.Tensor) -> None:
    """Set rows ``ids`` of every tied copy to ``rows`` in place (cast to the checkpoint's dtype).

    Copies sharing one storage (torch.save keeps tied parameters shared) are written once.
    """
    done: set[tuple[int, int]] = set()
    for key in keys:
        tensor = model_state[key]
        where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if where in done:
            continue
        done.add(where)
        if len(ids) == tensor.size(0) and torch.equal(ids, torch.arange(tensor.size(0))):
            tensor.copy_(rows)
        else:
            tensor.index_copy_(0, ids, rows.to(tensor.dtype))
