"""The file ``defemb-predict`` writes and ``defemb-surgery`` reads.

A ``torch.save`` dict::

    token_ids        LongTensor[N]     dictionary ids that received a prediction
    embeddings       FloatTensor[N, d] mean predicted embedding per id
    num_definitions  LongTensor[N]     prompts (definitions) behind each mean
    embedding_dim    int               d of the source checkpoint's embedding matrix
    dictionary_sha256 str              hash of the dict.txt the ids refer to
    dictionary_size  int               rows of the embedding matrix (dict + <mask>)
    source_checkpoint str              the DefinitionEMB checkpoint that predicted them
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fairseq_defemb.atomic_io import torch_save

REQUIRED_KEYS = ("token_ids", "embeddings", "num_definitions", "embedding_dim", "dictionary_sha256", "dictionary_size")


@dataclass
class PredictedEmbeddings:
    token_ids: torch.Tensor
    embeddings: torch.Tensor
    num_definitions: torch.Tensor
    embedding_dim: int
    dictionary_sha256: str
    dictionary_size: int
    source_checkpoint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        torch_save(
            {
                "token_ids": self.token_ids.long(),
                "embeddings": self.embeddings.float(),
                "num_definitions": self.num_definitions.long(),
                "embedding_dim": int(self.embedding_dim),
                "dictionary_sha256": self.dictionary_sha256,
                "dictionary_size": int(self.dictionary_size),
                "source_checkpoint": str(self.source_checkpoint),
                **self.extra,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> "PredictedEmbeddings":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: embeddings file not found; create it with defemb-predict")
        data = torch.load(path, map_location="cpu", weights_only=True)
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ValueError(f"{path}: not a defemb-predict output (missing {', '.join(missing)})")
        n = data["token_ids"].numel()
        if data["embeddings"].shape != (n, data["embedding_dim"]) or data["num_definitions"].numel() != n:
            raise ValueError(
                f"{path}: inconsistent shapes (ids {n}, embeddings {tuple(data['embeddings'].shape)}, "
                f"dim {data['embedding_dim']}); regenerate it with defemb-predict"
            )
        known = {k: data.pop(k) for k in (*REQUIRED_KEYS, "source_checkpoint") if k in data}
        return cls(**known, extra=data)
