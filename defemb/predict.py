"""An embedding for every defined token of the vocabulary (the library behind ``defemb-predict``).

Runs the trained DefinitionEMB model over every (token, definition, variant)
occurrence of a definition corpus, deterministically (one ``<mask>`` at a time for
encoder-only models, one teacher-forced decoder pass per prompt for BART), in
length-bucketed batches, and averages the predictions per token id.
"""
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from defemb.data.corpus_format import DICT_FILE, check_corpus_dictionary
from defemb.data.embedding_file import PredictedEmbeddings
from defemb.data.vocabulary import dictionary_sha256

logger = logging.getLogger("defemb-predict")


def load_definition_model(checkpoint: str | Path, corpus_dir: str | Path, device: str = "cpu"):
    """Load a DefinitionEMB checkpoint for inference on ``corpus_dir``; return (model, task)."""
    from fairseq import checkpoint_utils

    import fairseq_defemb  # noqa: F401  (registers the plugin, safe globals)

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: not found (a checkpoint written by fairseq-train --task definition_cloze)")
    check_corpus_dictionary(corpus_dir)
    state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    trained_on = getattr(state["cfg"]["model"], "dictionary_sha256", None) if state.get("cfg") else None
    corpus_hash = dictionary_sha256(Path(corpus_dir) / DICT_FILE)
    if trained_on is None:
        raise ValueError(f"{checkpoint}: not a DefinitionEMB checkpoint (train it with --task definition_cloze)")
    if trained_on != corpus_hash:
        raise ValueError(
            f"{Path(corpus_dir) / DICT_FILE} is not the dictionary {checkpoint} was trained with; "
            "predict on a corpus built with the model's dict.txt"
        )
    # The stored cfg already holds the pretrained architecture: no need for the original file.
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(corpus_dir), "pretrained_checkpoint": None}, state=state
    )
    model = models[0].to(device).eval()
    return model, task


def predict_with_model(
    model,
    task,
    splits: tuple[str, ...] = ("train", "valid"),
    max_tokens: int = 8192,
    batch_size: int | None = None,
    token_ids: set[int] | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean prediction per token id over every occurrence; returns (ids, vectors, num_definitions)."""
    from fairseq import utils
    from fairseq.data import data_utils

    device = next(model.parameters()).device
    vocab, dim = model.target_embeddings.shape
    datasets = [task.build_cloze_dataset(split, predict=True) for split in splits]
    # One float64 row per token some item predicts, not per vocabulary entry: the sums stay
    # small, and one accumulating index_put_ per batch adds them (index_add_ loops per row on CPU).
    ids = np.unique(np.concatenate([np.zeros(0, dtype=np.int64)] + [d.occurrences[:, 2] for d in datasets]))
    if token_ids is not None:
        ids = ids[np.isin(ids, np.fromiter(token_ids, dtype=np.int64))]
    slot_of = torch.full((vocab,), -1, dtype=torch.long)
    slot_of[torch.from_numpy(ids)] = torch.arange(len(ids))
    sums = torch.zeros(len(ids), dim, dtype=torch.float64, device=device)
    counts = torch.zeros(len(ids), dtype=torch.long)
    definition_pairs = []
    for offset, (split, dataset) in enumerate(zip(splits, datasets)):
        indices = dataset.ordered_indices()
        if token_ids is not None:
            table = dataset.occurrences
            hit = np.isin(table[:, 2], ids)
            wanted = np.nonzero(hit)[0] if dataset.corruption == "bert" else np.unique(table[hit, 0])
            indices = indices[np.isin(indices, wanted)]
        batches = data_utils.batch_by_size(
            indices, dataset.num_tokens, max_tokens=max_tokens, max_sentences=batch_size, required_batch_size_multiple=1
        )
        for batch in tqdm(batches, desc=f"predict {split}", unit="batch", disable=not progress):
            sample = dataset.collater([dataset[i] for i in batch])
            net_input = utils.move_to_cuda(sample["net_input"]) if device.type == "cuda" else sample["net_input"]
            with torch.inference_mode():
                predicted = model(**net_input)
            # A BART prompt also predicts the tokens --token-ids leaves out.
            slots = slot_of[sample["target"]]
            kept = slots >= 0
            slots = slots[kept]
            sums.index_put_((slots.to(device),), predicted[kept.to(device)].double(), accumulate=True)
            counts += torch.bincount(slots, minlength=len(ids))
            # A definition counts once per token, however many variants contain it.
            prompt = sample["definition"][sample["target_row"][kept]].numpy() + offset * (1 << 40)
            definition_pairs.append(prompt * len(ids) + slots.numpy())
    # Every id occurs in some item (ids come from the items' own occurrence tables).
    means = (sums / counts.to(device, torch.float64)[:, None]).float().cpu()
    pairs = np.unique(np.concatenate(definition_pairs)) if definition_pairs else np.zeros(0, dtype=np.int64)
    num_definitions = torch.from_numpy(np.bincount(pairs % max(len(ids), 1), minlength=len(ids)))
    return torch.from_numpy(ids), means, num_definitions


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
                       progress: bool = True) -> dict:
    """Predict with a DefinitionEMB checkpoint over ``corpus`` and write the embeddings file ``out``.
    ``mask_headword_everywhere`` overrides the checkpoint's own setting (None: keep it).

    Returns the coverage report (also stored in the file's ``extra``)."""
    model, task = load_definition_model(checkpoint, corpus, device)
    if mask_headword_everywhere is not None:
        task.set_mask_headword_everywhere(mask_headword_everywhere)
    start = time.perf_counter()
    ids, vectors, num_definitions = predict_with_model(model, task, tuple(splits), max_tokens, batch_size,
                                                       token_ids, progress=progress)
    seconds = time.perf_counter() - start
    dictionary = task.source_dictionary
    defined = len(dictionary) - dictionary.nspecial - 1  # no specials, no <mask>
    coverage = {"predicted_tokens": len(ids), "vocabulary": defined, "share": len(ids) / max(defined, 1),
                "seconds": round(seconds, 2),
                "mask_headword_everywhere": bool(task.cfg.mask_headword_everywhere)}
    PredictedEmbeddings(
        token_ids=ids, embeddings=vectors, num_definitions=num_definitions,
        embedding_dim=model.target_embeddings.size(1),
        dictionary_sha256=dictionary_sha256(Path(corpus) / DICT_FILE),
        dictionary_size=model.target_embeddings.size(0), source_checkpoint=str(checkpoint),
        extra={"coverage": coverage, "corpus": str(corpus)},
    ).save(out)
    return coverage
