"""Build fairseq pretraining models from command-line style options and save them
in exactly the format fairseq's trainer writes, so stock tools load the result."""
import warnings
from pathlib import Path
from typing import Any

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from omegaconf import OmegaConf

from fairseq_defemb.atomic_io import torch_save


def build_pretraining_model(data_dir: str | Path, task: str, arch: str, extra_args: list[str] = ()) -> tuple[Any, torch.nn.Module, Any]:
    """Parse ``fairseq-train``-style options and build ``(task, model, cfg)``.

    ``data_dir`` must hold the ``dict.txt``; the task appends ``<mask>`` as in
    pretraining, so the embedding matrix has the rows the released checkpoints have.
    """
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, [str(data_dir), "--task", task, "--arch", arch, "--cpu", *extra_args]
    )
    with warnings.catch_warnings():
        # fairseq's conversion calls hydra APIs deprecated since hydra 1.1: the warnings are
        # about fairseq's code, and say nothing about these options
        warnings.simplefilter("ignore")
        cfg = convert_namespace_to_omegaconf(args)
    task_obj = tasks.setup_task(cfg.task)
    model = task_obj.build_model(cfg.model)
    return task_obj, model, cfg


def save_model_checkpoint(model: torch.nn.Module, cfg: Any, path: str | Path, num_updates: int = 0,
                          extra: dict | None = None) -> Path:
    """Save ``model`` as a trainer-format checkpoint (what ``checkpoint_best.pt`` holds); ``extra``: more
    top-level keys, which fairseq's loaders carry along and ignore."""
    state = {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if OmegaConf.is_config(cfg) else cfg,
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [
            {"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam", "lr_scheduler_state": {}, "num_updates": num_updates}
        ],
        "task_state": {},
        "extra_state": {"metrics": {}, "previous_training_time": 0.0},
        **(extra or {}),
    }
    torch_save(state, path)
    return Path(path)
