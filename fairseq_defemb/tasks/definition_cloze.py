"""``--task definition_cloze``: train DefinitionEMB on a binarized definition corpus."""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from fairseq.data import Dictionary
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING, OmegaConf, open_dict
from torch import nn

from preprocess.corpus.holdout import HELDOUT_SPLIT, load_holdout
from fairseq_defemb.data.cloze_dataset import DefinitionClozeDataset
from fairseq_defemb.data.corpus_format import DICT_FILE, check_corpus_dictionary, load_split
from fairseq_defemb.data.vocabulary import MASK_SYMBOL, load_fairseq_dictionary
from fairseq_defemb.models.pretrained import check_starting_point
from fairseq_defemb.options import FIT_POSITIONS, PREDICTION_MEANS, PREDICTION_NORMS

logger = logging.getLogger(__name__)

CORRUPTION_CHOICES = ChoiceEnum(["auto", "bert", "sentinel"])
PROJECTION_INIT_CHOICES = ChoiceEnum(["auto", "least-squares", "normal", "random"])
FIT_POSITION_CHOICES = ChoiceEnum(list(FIT_POSITIONS))
PREDICTION_NORM_CHOICES = ChoiceEnum(list(PREDICTION_NORMS))
PREDICTION_MEAN_CHOICES = ChoiceEnum(list(PREDICTION_MEANS))


@dataclass
class DefinitionClozeConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "definition corpus directory written by defemb-corpus"})
    corruption: CORRUPTION_CHOICES = field(
        default="auto",
        metadata={
            "help": "how headword subwords are corrupted: 'bert' (encoder-only: <mask>/random/unchanged), "
            "'sentinel' (encoder-decoder: each variant span -> one <mask>, decoder fed the target prefix); "
            "'auto' picks by the model"
        },
    )
    mask_prob: float = field(
        default=0.5, metadata={"help": "bert corruption: probability a headword subword becomes <mask> (paper: 0.5)"}
    )
    random_token_prob: float = field(
        default=0.25,
        metadata={"help": "bert corruption: probability it becomes a random token (paper: 0.25); the rest stay unchanged"},
    )
    max_positions: int = field(
        default=512, metadata={"help": "longest prompt (tokens) the model accepts; longer ones are skipped"}
    )
    mask_headword_everywhere: bool = field(
        default=False,
        metadata={"help": "also replace by <mask> every id of the headword's subwords found outside the variant "
                  "spans (e.g. inside its own definition), so the model cannot copy it (not in the paper)"},
    )
    skip_definition_only_copies: bool = field(
        default=False,
        metadata={"help": "train and validate on the paper's prompts only, leaving out the definition-only copies "
                  "a corpus built with defemb-corpus --definition-only-copies holds"},
    )
    prediction_norm: PREDICTION_NORM_CHOICES = field(
        default="rows",
        metadata={"help": "the norm of an embedding defemb-predict writes (the paper is silent): 'rows' (default): "
                  "the mean norm of the pretrained embedding rows, the direction the model's (least squares and "
                  "Eq. 5 shrink predictions toward the targets' centroid, to rows surgery's sanity guard "
                  "refuses); 'raw': W h as computed"},
    )
    prediction_mean: PREDICTION_MEAN_CHOICES = field(
        default="rows",
        metadata={"help": "where the embeddings defemb-predict writes are centred (the paper is silent): 'rows' "
                  "(default): the model's mean prediction over reference tokens of the corpus (its valid split) "
                  "is replaced by the pretrained rows' mean, so the direction every prediction shares is not a "
                  "hub every new row sits next to (docs/definition-model.md measures it); 'raw': W h as computed"},
    )
    projection_init: PROJECTION_INIT_CHOICES = field(
        default="auto",
        metadata={"help": "initial W (the paper does not specify one): 'least-squares' (ridge regression from the "
                  "frozen pretrained model's states on a sample of training prompts to their pretrained embedding "
                  "rows, fairseq_defemb.fit: the measured best, docs/definition-model.md), 'normal' (N(0, 1/h_s): "
                  "the W of the authors' code, their --defn-strategy linear), 'random' (nn.Linear's uniform draw); "
                  "'auto' (default): the W of --projection-init-from when given, else least-squares (random "
                  "with --from-scratch: no pretrained model to read). A run that resumes from a checkpoint takes "
                  "the checkpoint's W and fits nothing"},
    )
    projection_init_samples: int = field(
        default=10000, metadata={"help": "--projection-init least-squares: training prompts read for the fit"}
    )
    projection_init_positions: FIT_POSITION_CHOICES = field(
        default="headword",
        metadata={"help": "--projection-init least-squares: fit on the headword as written when it is one "
                  "subword ('headword', read once per prompt; the measured best) or on 'every' headword subword"},
    )
    projection_init_lambda: Optional[float] = field(
        default=None,
        metadata={"help": "--projection-init least-squares: ridge lambda; default: the best of "
                  "0.01, 0.1, ..., 10000 by validation loss"},
    )
    projection_init_from: Optional[str] = field(
        default=None,
        metadata={"help": "initial W copied from this checkpoint instead of --projection-init: fit.pt written by "
                  "defemb-fit (the least-squares W without reading the training prompts again), or a "
                  "definition_cloze checkpoint; its frozen embedding rows must equal this model's (checked)"},
    )
    seed: int = II("common.seed")
    # where fairseq-train resumes from: a resumed run's W is the checkpoint's, so nothing is fitted
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")


def set_option(cfg, key: str, value) -> None:
    """Set ``key`` on a model cfg, an omegaconf node (possibly in struct mode) or a Namespace."""
    if OmegaConf.is_config(cfg):
        with open_dict(cfg):
            cfg[key] = value
    else:
        setattr(cfg, key, value)


@register_task("definition_cloze", dataclass=DefinitionClozeConfig)
class DefinitionClozeTask(FairseqTask):
    cfg: DefinitionClozeConfig

    def __init__(self, cfg: DefinitionClozeConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.mask_idx = dictionary.index(MASK_SYMBOL)
        self.corruption = None if cfg.corruption == "auto" else str(cfg.corruption)
        holdout = load_holdout(cfg.data)
        self.holdout_ids = np.asarray(holdout["ids"] if holdout else [], dtype=np.int64)
        # fairseq_defemb.fit's report of --projection-init least-squares, once build_model has run it
        self.projection_init_report: dict | None = None

    @classmethod
    def setup_task(cls, cfg: DefinitionClozeConfig, **kwargs):
        if not (0.0 <= cfg.mask_prob and 0.0 <= cfg.random_token_prob and cfg.mask_prob + cfg.random_token_prob <= 1.0):
            raise ValueError(
                f"--mask-prob {cfg.mask_prob} and --random-token-prob {cfg.random_token_prob} must be >= 0 "
                "and sum to at most 1 (the rest of the headword subwords stay unchanged)"
            )
        meta = check_corpus_dictionary(cfg.data)
        dictionary = load_fairseq_dictionary(Path(cfg.data) / DICT_FILE)
        if len(dictionary) != meta["dictionary_size"]:
            raise ValueError(f"{cfg.data}: corpus.json says {meta['dictionary_size']} symbols, dict.txt gives {len(dictionary)}")
        logger.info(f"definition corpus {cfg.data}: dictionary of {len(dictionary)} types, splits {meta['splits']}")
        return cls(cfg, dictionary)

    def build_model(self, cfg, from_checkpoint=False):
        if from_checkpoint:
            # The checkpoint being loaded holds every weight, the frozen regression target
            # included: the file training started from (a path on the training machine) is
            # not needed, wherever the checkpoint is loaded.
            set_option(cfg, "pretrained_checkpoint", None)
        else:
            check_starting_point(cfg, self.cfg.data)
        model = super().build_model(cfg, from_checkpoint)
        if self.corruption is None:
            self.corruption = "sentinel" if model.is_encoder_decoder else "bert"
        elif self.corruption == "sentinel" and not model.is_encoder_decoder:
            raise ValueError("--corruption sentinel needs an encoder-decoder model (defemb_bart_*)")
        for dataset in self.datasets.values():
            dataset.set_corruption(self.corruption)
        logger.info(f"definition cloze corruption: {self.corruption}")
        if not from_checkpoint:
            init = self.cfg.projection_init
            if self.cfg.projection_init_from and init != "auto":
                raise ValueError(f"--projection-init {init} and --projection-init-from: give one")
            resumed = self.resumes_from()
            if resumed is not None and init in ("auto", "least-squares"):
                logger.info(f"resuming from {resumed}: W is the checkpoint's, nothing fitted")
            elif init == "normal":
                # drawn from torch's generator, which fairseq-train seeds before building the model
                nn.init.normal_(model.projection.weight, std=model.projection.in_features ** -0.5)
            elif init == "least-squares" or self.cfg.projection_init_from or (
                    init == "auto" and not getattr(cfg, "from_scratch", False)):
                self.initialise_projection(model, cfg)
        return model

    def resumes_from(self) -> Path | None:
        """The checkpoint fairseq-train will load weights from (its --restore-file, by default
        SAVE_DIR/checkpoint_last.pt when it exists), or None for a fresh run."""
        restore = str(getattr(self.cfg, "restore_file", None) or "checkpoint_last.pt")
        path = Path(restore) if restore != "checkpoint_last.pt" else Path(str(getattr(self.cfg, "save_dir", None) or "checkpoints")) / restore
        return path if path.is_file() else None

    def initialise_projection(self, model, model_cfg) -> None:
        """W before any update: fitted by least squares from the frozen pretrained model
        (--projection-init least-squares) or copied from a checkpoint (--projection-init-from)."""
        import torch

        from fairseq_defemb.fit import fit_projection, load_projection

        device = "cuda" if torch.cuda.is_available() and not getattr(model_cfg, "cpu", False) else "cpu"
        if self.cfg.projection_init_from:
            model.to(device)
            report = load_projection(model, self, self.cfg.projection_init_from, seed=self.cfg.seed)
            fit = report["fit"]
            logger.info(f"--projection-init-from {report['checkpoint']}: W loaded" + (
                f" (defemb-fit: {fit['states']} states of {fit['prompts']} training prompts, lambda {fit['lambda']})"
                if fit else " (not a defemb-fit checkpoint: no mean target row to score beside it)"))
        else:
            if not getattr(model_cfg, "pretrained_checkpoint", None):
                raise ValueError("--projection-init least-squares reads the pretrained model: pass --pretrained-checkpoint")
            model.to(device)
            report = fit_projection(model, self, samples=self.cfg.projection_init_samples,
                                    lam=self.cfg.projection_init_lambda, seed=self.cfg.seed, valid_as_trained=True,
                                    positions=str(self.cfg.projection_init_positions))
            logger.info(
                f"--projection-init least-squares: W fitted on {report['fit']['states']} states of "
                f"{report['fit']['prompts']} training prompts, lambda {report['lambda']} ({report['lambda_source']}), "
                f"in {sum(report['seconds'].values()):.1f}s"
            )
        model.cpu()  # the trainer places the model itself
        self.projection_init_report = report
        valid = report["valid"]
        if "fitted_W" in valid:
            # a W from defemb-fit or least squares is "fitted"; one from a trained checkpoint is not
            label = "loaded" if self.cfg.projection_init_from and not report.get("fit") else "fitted"
            scores = [f"random W {valid['random_W']['loss']:.4f} (cosine {valid['random_W']['cosine']:.3f})",
                      f"{label} W {valid['fitted_W']['loss']:.4f} (cosine {valid['fitted_W']['cosine']:.3f})"]
            if "mean_row" in valid:
                scores.append(f"mean target row {valid['mean_row']['loss']:.4f} (cosine {valid['mean_row']['cosine']:.3f})")
            logger.info(f"valid loss before training ({valid['prompts']} prompts, corrupted as validation is): "
                        + ", ".join(scores))

    def set_prediction(self, norm: str | None = None, mean: str | None = None) -> None:
        """Override the stored ``--prediction-norm`` / ``--prediction-mean`` (defemb-predict's options; None keeps)."""
        for option, value, choices in (("norm", norm, PREDICTION_NORMS), ("mean", mean, PREDICTION_MEANS)):
            if value is None:
                continue
            if value not in choices:
                raise ValueError(f"--prediction-{option} {value}: one of {', '.join(choices)}")
            with open_dict(self.cfg):
                setattr(self.cfg, f"prediction_{option}", value)

    def set_mask_headword_everywhere(self, value: bool) -> None:
        """Override the stored ``--mask-headword-everywhere`` (prediction from a checkpoint trained without it)."""
        with open_dict(self.cfg):
            self.cfg.mask_headword_everywhere = value

    def random_token_ids(self) -> np.ndarray:
        """Replacement candidates for bert corruption: every real symbol, no specials."""
        ids = np.arange(self.dictionary.nspecial, len(self.dictionary))
        return ids[ids != self.mask_idx]

    def build_cloze_dataset(self, split: str, predict: bool = False) -> DefinitionClozeDataset:
        return DefinitionClozeDataset(
            load_split(self.cfg.data, split, definition_only_copies=not self.cfg.skip_definition_only_copies),
            pad_idx=self.dictionary.pad(),
            eos_idx=self.dictionary.eos(),
            mask_idx=self.mask_idx,
            random_token_ids=self.random_token_ids(),
            corruption=self.corruption,
            mask_prob=self.cfg.mask_prob,
            random_token_prob=self.cfg.random_token_prob,
            seed=self.cfg.seed,
            predict=predict,
            fixed_corruption=not split.startswith("train"),
            hidden_ids=self.holdout_ids if split.startswith(HELDOUT_SPLIT) else None,
            mask_headword_everywhere=self.cfg.mask_headword_everywhere,
        )

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        # What fairseq-train loads (train and valid) must never have a held-out token as a target.
        if split.startswith(HELDOUT_SPLIT):
            raise ValueError(f"{self.cfg.data}: split '{split}' holds the held-out tokens; it is for defemb-predict "
                             "only, never for training or validation")
        dataset = self.build_cloze_dataset(split)
        if len(self.holdout_ids):
            leaked = np.isin(dataset.occurrences[:, 2], self.holdout_ids)
            if leaked.any():
                raise ValueError(
                    f"{self.cfg.data}/{split}: prompt {int(dataset.occurrences[leaked][0, 0])} has held-out token "
                    f"{int(dataset.occurrences[leaked][0, 2])} in a headword span ({int(leaked.sum())} such targets); "
                    "the corpus was edited after defemb-corpus --holdout wrote it, rebuild it"
                )
        self.datasets[split] = dataset
        logger.info(f"loaded {len(self.datasets[split])} definitions from {self.cfg.data}/{split}")

    def max_positions(self):
        return (self.cfg.max_positions, self.cfg.max_positions) if self.corruption == "sentinel" else self.cfg.max_positions

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary
