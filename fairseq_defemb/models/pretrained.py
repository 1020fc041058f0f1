"""Loading a stock fairseq checkpoint as the starting point of a DefinitionEMB model.

Architecture hyperparameters come from the checkpoint (so the saved DefinitionEMB
checkpoint describes itself and reloads without the original file), regularisation
(dropout, layerdrop) from the command line.
"""
import argparse
from pathlib import Path
from typing import Any, Callable

from fairseq import checkpoint_utils
from omegaconf import OmegaConf

from fairseq_defemb.surgery.checkpoint import embedding_keys
from fairseq_defemb.data.vocabulary import dictionary_sha256

# Options that are about training, not about the shape of the network.
NOT_ARCHITECTURE = {"_name", "arch", "pretrained_checkpoint", "from_scratch", "update_embeddings", "load_checkpoint_heads",
                    "checkpoint_activations", "offload_activations", "min_params_to_wrap", "data",
                    "dictionary_sha256"}


def _is_regularisation(key: str) -> bool:
    return key.endswith("dropout") or key.endswith("layerdrop")


def _as_dict(model_cfg: Any) -> dict[str, Any]:
    if isinstance(model_cfg, argparse.Namespace):
        return vars(model_cfg)
    return OmegaConf.to_container(model_cfg, resolve=True)


def check_starting_point(model_cfg: Any, corpus_dir: str | Path) -> None:
    """``--pretrained-checkpoint`` or an explicit ``--from-scratch``, exactly one of them.

    Without a pretrained checkpoint the network and Eq. 5's regression target (its
    embedding matrix) are both random: training runs, logs falling losses and repairs
    nothing, so a forgotten option must stop the run, not cost GPU-days.
    """
    pretrained = getattr(model_cfg, "pretrained_checkpoint", None)
    from_scratch = bool(getattr(model_cfg, "from_scratch", False))
    if pretrained and from_scratch:
        raise ValueError(f"--pretrained-checkpoint {pretrained} and --from-scratch exclude each other: drop one")
    if not pretrained and not from_scratch:
        raise ValueError(
            "--task definition_cloze needs --pretrained-checkpoint PATH: the model.pt of the stock fairseq "
            f"checkpoint whose embeddings DefinitionEMB repairs (e.g. bart.large/model.pt or roberta.base/model.pt; "
            f"the dict.txt beside it must be {Path(corpus_dir) / 'dict.txt'}). Its embedding matrix is the "
            "regression target. Pass --from-scratch instead to train a random network on purpose (tests, benchmarks)."
        )


def load_pretrained(path: str, corpus_dict: str | Path, num_embeddings: int) -> dict[str, Any]:
    """Load ``path`` and check it matches the corpus's dictionary; return the checkpoint state."""
    ckpt = Path(path)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"--pretrained-checkpoint {ckpt}: file not found. Pass the model.pt of a fairseq checkpoint "
            "directory, e.g. bart.large/model.pt or roberta.base/model.pt."
        )
    state = checkpoint_utils.load_checkpoint_to_cpu(str(ckpt))
    rows = state["model"][embedding_keys(state["model"])[0]].size(0)
    if rows != num_embeddings:
        raise ValueError(
            f"{ckpt} has {rows} embedding rows but the corpus dictionary {corpus_dict} gives {num_embeddings} "
            f"(dict.txt + specials + <mask>): the corpus was built for another vocabulary. Rebuild it with "
            f"`defemb-corpus --vocab {ckpt.parent / 'dict.txt'} ...`."
        )
    beside = ckpt.parent / "dict.txt"
    if beside.is_file() and dictionary_sha256(beside) != dictionary_sha256(corpus_dict):
        raise ValueError(
            f"{beside} (the checkpoint's dictionary) differs from {corpus_dict} (the corpus's): ids would not "
            f"refer to the same tokens. Rebuild the corpus with `defemb-corpus --vocab {beside} ...`."
        )
    return state


def architecture_keys(model_cls: type, architecture: Callable[[Any], None]) -> set[str]:
    """Options that shape ``model_cls``: its own command-line options and what its arch sets.

    Legacy checkpoints store every option (task, optimizer...) in the model cfg; only
    these may be copied, or the checkpoint's ``--task masked_lm`` would leak in.
    """
    parser = argparse.ArgumentParser()
    model_cls.add_args(parser)
    defaults = argparse.Namespace()
    architecture(defaults)
    keys = {action.dest for action in parser._actions} | set(vars(defaults))
    return {k for k in keys if k not in NOT_ARCHITECTURE and not _is_regularisation(k)}


def adopt_architecture(args: Any, pretrained_model_cfg: Any, keys: set[str], checked_fields: tuple[str, ...],
                       arch: str) -> None:
    """Copy the checkpoint's architecture (``keys``) into ``args``; a named arch must agree with it."""
    pretrained = _as_dict(pretrained_model_cfg)
    mismatched = [
        f"{name}: checkpoint {pretrained[name]}, --arch {arch} {getattr(args, name, None)}"
        for name in checked_fields
        if name in pretrained and getattr(args, name, None) != pretrained[name]
    ]
    if mismatched:
        raise ValueError(
            f"--arch {arch} does not match --pretrained-checkpoint ({'; '.join(mismatched)}). Pick the arch of "
            "the checkpoint's size, or the generic defemb_roberta / defemb_bart that take every dimension from it."
        )
    for key, value in pretrained.items():
        if key in keys:
            setattr(args, key, value)
