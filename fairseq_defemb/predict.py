"""An embedding for every defined token of the vocabulary (the library behind ``defemb-predict``).

Runs the trained DefinitionEMB model over every (token, definition, variant)
occurrence of a definition corpus, deterministically (one ``<mask>`` at a time for
encoder-only models, one teacher-forced decoder pass per prompt for BART), in
length-bucketed batches, and averages the predictions per token id. Under the task's default
``--prediction-mean rows`` the rows are then centred: the model's mean prediction over
``REFERENCE_TOKENS`` tokens of a reference corpus (their rows known) is replaced by the pretrained
rows' mean; ``--prediction-norm rows`` then gives every row the pretrained rows' mean norm.
"""
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fairseq_defemb.data.corpus_format import DICT_FILE, check_corpus_dictionary
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.data.vocabulary import MASK_SYMBOL, dictionary_sha256
from fairseq_defemb.options import AVERAGES

logger = logging.getLogger("defemb-predict")

# Tokens whose predictions estimate the direction every prediction shares. On make eval's seed-1
# model, centring on 100, 300 or 1,000 random valid-split tokens gave the same held-out MRR within
# 0.01 (five draws each): 300 costs a few seconds of prediction.
REFERENCE_TOKENS = 300
REFERENCE_SPLITS = ("valid", "train")


def load_definition_model(checkpoint: str | Path, corpus_dir: str | Path, device: str = "cpu"):
    """Load a DefinitionEMB checkpoint for inference on ``corpus_dir``; return (model, task).

    The task is set up from ``corpus_dir``, never from the corpus path the checkpoint
    recorded at training time (fairseq applies ``arg_overrides`` only when it reads the
    state itself): a checkpoint trained elsewhere, or whose training directory was
    renamed or deleted, predicts on the corpus it is given. Nothing else recorded is a
    path the load needs: the task drops ``--pretrained-checkpoint`` when it builds a
    model from a checkpoint.
    """
    from fairseq import checkpoint_utils, tasks
    from omegaconf import open_dict

    from fairseq_defemb import register

    register()

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: not found (a checkpoint written by fairseq-train --task definition_cloze)")
    check_corpus_dictionary(corpus_dir)
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    except Exception as err:  # truncated zip archives, empty files, pickle errors: many types
        raise ValueError(f"--checkpoint {checkpoint}: cannot be read as a torch checkpoint ({type(err).__name__}: "
                         f"{str(err)[:200]}); it is truncated or not a checkpoint: pass the checkpoint_best.pt "
                         "that fairseq-train --task definition_cloze wrote") from None
    cfg = state.get("cfg")
    trained_on = getattr(cfg["model"], "dictionary_sha256", None) if cfg else None
    corpus_hash = dictionary_sha256(Path(corpus_dir) / DICT_FILE)
    if trained_on is None or cfg["task"].get("_name") != "definition_cloze":
        raise ValueError(f"{checkpoint}: not a DefinitionEMB checkpoint (train it with --task definition_cloze)")
    if trained_on != corpus_hash:
        raise ValueError(
            f"{Path(corpus_dir) / DICT_FILE} is not the dictionary {checkpoint} was trained with; "
            "predict on a corpus built with the model's dict.txt"
        )
    trained_on_corpus = cfg.task.data
    with open_dict(cfg.task):
        cfg.task.data = str(corpus_dir)
    task = tasks.setup_task(cfg.task, from_checkpoint=True)
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], task=task, state=state)
    task.trained_on_corpus = trained_on_corpus  # the corpus path the checkpoint recorded (it may be gone)
    model = models[0].to(device).eval()
    return model, task


def task_on_corpus(task, corpus_dir: str | Path):
    """A copy of the definition model's ``task`` reading ``corpus_dir``, built with the same dict.txt."""
    import copy

    from fairseq import tasks
    from omegaconf import open_dict

    check_corpus_dictionary(corpus_dir)
    if dictionary_sha256(Path(corpus_dir) / DICT_FILE) != dictionary_sha256(Path(task.cfg.data) / DICT_FILE):
        raise ValueError(f"{Path(corpus_dir) / DICT_FILE} is not the definition model's dictionary")
    cfg = copy.deepcopy(task.cfg)
    with open_dict(cfg):
        cfg.data = str(corpus_dir)
    copy_ = tasks.setup_task(cfg, from_checkpoint=True)
    copy_.corruption = task.corruption  # set when the task built the model, which the copy does not
    return copy_




def check_average(average: str) -> None:
    if average not in AVERAGES:
        raise ValueError(f"--average {average}: must be one of {', '.join(AVERAGES)}")


def occurrence_weights(average: str, occurrences: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """The weight of each prediction under ``average``, looked up by (prompt, token) key.

    Returns (sorted keys ``prompt * vocab + token``, weight per key). ``definitions``: a
    token occurring c times in one prompt (several variants contain it) weighs 1/c there,
    so each definition contributes once; ``occurrences``: every occurrence weighs 1.
    """
    keys, counts = np.unique(occurrences[:, 0] * vocab + occurrences[:, 2], return_counts=True)
    weights = 1.0 / counts if average == "definitions" else np.ones(len(keys))
    return keys, weights


def predict_with_model(
    model,
    task,
    splits: tuple[str, ...] = ("train", "valid"),
    max_tokens: int = 8192,
    batch_size: int | None = None,
    token_ids: set[int] | None = None,
    progress: bool = True,
    average: str = "definitions",
    reference_task=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One vector per token id predicted over the corpus; returns (ids, vectors, num_definitions).

    ``average="definitions"`` (the default, see ``defemb-predict --help``): the mean over the
    token's definitions of its mean prediction within each; ``"occurrences"``: the mean over
    every occurrence, so a definition weighs as many times as its variants contain the token.
    The vectors are centred and scaled as the task's ``--prediction-mean`` and ``--prediction-norm``
    say; the centring's reference tokens come from ``reference_task``'s corpus (default: ``task``'s).
    """
    ids, means, num_definitions = raw_predictions(model, task, splits, max_tokens, batch_size, token_ids, progress,
                                                  average)
    reference = None
    if prediction_mean_of(task) == "rows":
        reference = reference_mean(model, reference_task or task, max_tokens, batch_size, progress)
    return ids, finish_rows(means, model, task, reference), num_definitions


def raw_predictions(model, task, splits: tuple[str, ...], max_tokens: int, batch_size: int | None,
                    token_ids: set[int] | None, progress: bool, average: str
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``predict_with_model``'s (ids, vectors, num_definitions), the vectors as the model computes them."""
    from fairseq import utils

    check_average(average)
    device = next(model.parameters()).device
    vocab, dim = model.target_embeddings.shape
    datasets = [task.build_cloze_dataset(split, predict=True) for split in splits]
    # One float64 row per token some item predicts, not per vocabulary entry: the sums stay
    # small, and one accumulating index_put_ per batch adds them (index_add_ loops per row on CPU).
    ids = np.unique(np.concatenate([np.zeros(0, dtype=np.int64)] + [d.occurrences[:, 2] for d in datasets]))
    if token_ids is not None:
        ids = ids[np.isin(ids, np.fromiter(token_ids, dtype=np.int64))]
    # Span ids past the vocabulary are placeholders of tokens the model does not have (new words of
    # defemb-add-tokens): hidden by the dataset, they are never embedded, only grouped by.
    id_space = max(vocab, int(ids.max(initial=-1)) + 1)
    slot_of = torch.full((id_space,), -1, dtype=torch.long)
    slot_of[torch.from_numpy(ids)] = torch.arange(len(ids))
    sums = torch.zeros(len(ids), dim, dtype=torch.float64, device=device)
    definition_pairs = []
    for offset, (split, dataset) in enumerate(zip(splits, datasets)):
        indices = dataset.ordered_indices()
        if token_ids is not None:
            table = dataset.occurrences
            hit = np.isin(table[:, 2], ids)
            wanted = np.nonzero(hit)[0] if dataset.corruption == "bert" else np.unique(table[hit, 0])
            indices = indices[np.isin(indices, wanted)]
        keys, key_weights = occurrence_weights(average, dataset.occurrences, id_space)
        batches = dataset.batch_by_size(indices, max_tokens=max_tokens, max_sentences=batch_size)
        for batch in tqdm(batches, desc=f"predict {split}", unit="batch", disable=not progress):
            sample = dataset.collate_indices(batch)
            net_input = utils.move_to_cuda(sample["net_input"]) if device.type == "cuda" else sample["net_input"]
            with torch.inference_mode():
                predicted = model(**net_input)
            # A BART prompt also predicts the tokens --token-ids leaves out.
            slots = slot_of[sample["target"]]
            kept = slots >= 0
            slots = slots[kept]
            prompts = sample["definition"][sample["target_row"][kept]].numpy()
            weights = key_weights[np.searchsorted(keys, prompts * id_space + sample["target"][kept].numpy())]
            weighted = predicted[kept.to(device)].double() * torch.from_numpy(weights).to(device)[:, None]
            sums.index_put_((slots.to(device),), weighted, accumulate=True)
            definition_pairs.append((prompts + offset * (1 << 40)) * len(ids) + slots.numpy())
    # (split, prompt, slot) of every prediction: counted per slot once here, not per batch over every slot.
    pairs = np.concatenate(definition_pairs) if definition_pairs else np.zeros(0, dtype=np.int64)
    counts = torch.from_numpy(np.bincount(pairs % max(len(ids), 1), minlength=len(ids)))
    # A definition counts once per token, however many variants contain it.
    num_definitions = torch.from_numpy(np.bincount(np.unique(pairs) % max(len(ids), 1), minlength=len(ids)))
    # Every id occurs in some item (ids come from the items' own occurrence tables).
    total_weight = num_definitions if average == "definitions" else counts
    means = (sums / total_weight.to(device, torch.float64)[:, None]).float().cpu()
    return torch.from_numpy(ids), means, num_definitions


def reference_mean(model, task, max_tokens: int = 8192, batch_size: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """The mean of the model's predictions, each at the pretrained rows' mean norm, for a seeded sample
    of ``REFERENCE_TOKENS`` tokens of ``task``'s corpus: its valid split, or its train split when it
    has no valid prompt. A corpus with neither (defemb-add-tokens' new words alone) is refused: pass
    the corpus the model was trained on as the reference."""
    from fairseq_defemb.data.corpus_format import read_metadata

    splits = read_metadata(task.cfg.data).get("splits", {})
    split = next((name for name in REFERENCE_SPLITS if splits.get(name)), None)
    if split is None:
        raise ValueError(f"{task.cfg.data}: no valid or train prompt to centre the predictions on (--prediction-mean "
                         "rows); give the corpus the definition model was trained on as the reference, or predict "
                         "with --prediction-mean raw")
    tokens = np.unique(task.build_cloze_dataset(split, predict=True).occurrences[:, 2])
    sample = np.random.default_rng(0).choice(tokens, size=min(REFERENCE_TOKENS, len(tokens)), replace=False)
    _, vectors, _ = raw_predictions(model, task, (split,), max_tokens, batch_size, set(sample.tolist()), progress,
                                    "definitions")
    return to_row_norm(vectors, model.target_embeddings.detach().cpu(), task.source_dictionary).double().mean(dim=0)


def finish_rows(vectors: torch.Tensor, model, task, reference: torch.Tensor | None) -> torch.Tensor:
    """``vectors`` as the task's --prediction-mean and --prediction-norm want them. Centring works at the
    rows' scale: each vector at the rows' mean norm, minus ``reference`` (the model's mean prediction
    there), plus the pretrained rows' mean; the result keeps its direction and takes the rows' mean
    norm ('rows') or the vector's own ('raw')."""
    embeddings = model.target_embeddings.detach().cpu()
    dictionary = task.source_dictionary
    if reference is not None:
        norms = vectors.double().norm(dim=1, keepdim=True)
        centred = to_row_norm(vectors, embeddings, dictionary).double() - reference + row_mean(embeddings, dictionary)
        vectors = (centred * torch.where(norms > 0, norms / centred.norm(dim=1, keepdim=True).clamp(min=1e-30), 0.0)
                   ).float()
    if prediction_norm_of(task) == "rows":
        vectors = to_row_norm(vectors, embeddings, dictionary)
    return vectors


def prediction_norm_of(task) -> str:
    """The checkpoint's --prediction-norm (fairseq gives a checkpoint saved before the option existed
    the task's default when it loads it; 'raw' for a task config without the field)."""
    return str(getattr(task.cfg, "prediction_norm", "raw"))


def prediction_mean_of(task) -> str:
    """The checkpoint's --prediction-mean, read as ``prediction_norm_of`` reads its option."""
    return str(getattr(task.cfg, "prediction_mean", "raw"))


def real_rows(embeddings: torch.Tensor, dictionary) -> torch.Tensor:
    """The pretrained rows of real symbols: no specials, no <mask>."""
    keep = torch.ones(len(embeddings), dtype=torch.bool)
    keep[:dictionary.nspecial] = False
    keep[dictionary.index(MASK_SYMBOL)] = False  # <unk>, a special, when the dictionary has no <mask>
    return embeddings[keep].double()


def row_mean(embeddings: torch.Tensor, dictionary) -> torch.Tensor:
    """The pretrained rows' mean (specials and <mask> left out)."""
    return real_rows(embeddings, dictionary).mean(dim=0)


def to_row_norm(vectors: torch.Tensor, embeddings: torch.Tensor, dictionary) -> torch.Tensor:
    """``vectors`` rescaled to the mean L2 norm of the pretrained rows (specials and <mask> left
    out of the mean), each keeping its direction; a zero vector stays zero."""
    target = real_rows(embeddings, dictionary).norm(dim=1).mean()
    norms = vectors.double().norm(dim=1, keepdim=True)
    return (vectors.double() * torch.where(norms > 0, target / norms.clamp(min=1e-30), 0.0)).float()


def read_token_ids(spec: str, option: str = "--token-ids") -> set[int]:
    """``option``'s value: a file with one id per line, or a comma-separated list."""
    path = Path(spec)
    text = path.read_text() if path.is_file() else spec.replace(",", "\n")
    ids = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.isdigit():
            raise ValueError(f"{option} {spec}:{lineno}: '{line}' is not a token id (one integer per line)")
        ids.add(int(line))
    return ids


def predict_embeddings(checkpoint: str | Path, corpus: str | Path, out: str | Path, *,
                       splits: tuple[str, ...] = ("train", "valid"), max_tokens: int = 8192,
                       batch_size: int | None = None, token_ids: set[int] | None = None,
                       device: str = "cpu", mask_headword_everywhere: bool | None = None,
                       prediction_norm: str | None = None, prediction_mean: str | None = None,
                       progress: bool = True, average: str = "definitions") -> dict:
    """Predict with a DefinitionEMB checkpoint over ``corpus`` and write the embeddings file ``out``.
    ``mask_headword_everywhere``, ``prediction_norm`` and ``prediction_mean`` override the checkpoint's
    own settings (None: keep them); the centring's reference tokens come from ``corpus``.

    Returns the coverage report (also stored in the file's ``extra``), with the ``average`` used."""
    check_average(average)
    model, task = load_definition_model(checkpoint, corpus, device)
    if mask_headword_everywhere is not None:
        task.set_mask_headword_everywhere(mask_headword_everywhere)
    task.set_prediction(norm=prediction_norm, mean=prediction_mean)
    start = time.perf_counter()
    ids, vectors, num_definitions = predict_with_model(model, task, tuple(splits), max_tokens, batch_size,
                                                       token_ids, progress=progress, average=average)
    seconds = time.perf_counter() - start
    dictionary = task.source_dictionary
    defined = len(dictionary) - dictionary.nspecial - 1  # no specials, no <mask>
    coverage = {"predicted_tokens": len(ids), "vocabulary": defined, "share": len(ids) / max(defined, 1),
                "average": average, "seconds": round(seconds, 2),
                "mask_headword_everywhere": bool(task.cfg.mask_headword_everywhere),
                "prediction_norm": prediction_norm_of(task), "prediction_mean": prediction_mean_of(task)}
    PredictedEmbeddings(
        token_ids=ids, embeddings=vectors, num_definitions=num_definitions,
        embedding_dim=model.target_embeddings.size(1),
        dictionary_sha256=dictionary_sha256(Path(corpus) / DICT_FILE),
        dictionary_size=model.target_embeddings.size(0), source_checkpoint=str(checkpoint),
        extra={"coverage": coverage, "corpus": str(corpus)},
    ).save(out)
    return coverage
