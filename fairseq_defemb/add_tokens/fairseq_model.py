"""New tokens in a fairseq BART/RoBERTa checkpoint directory (model.pt + dict.txt, GPT-2 BPE).

The layout stock fairseq expects is kept. ``dict.txt`` lists the BPE symbols and the
``madeupwordNNNN`` fillers that pad it; the pretraining tasks append ``<mask>``, so the matrix has
``4 + lines + 1`` rows with ``<mask>`` last, and a fine-tuning task that does not add ``<mask>``
(translation) drops that last row on load. So the new symbols are appended to ``dict.txt`` after
the fillers, and every vocabulary-sized tensor (the tied embeddings, RoBERTa's LM-head bias)
grows by their rows inserted before ``<mask>``, which moves to the new end. Every other row and
every other tensor is carried over bitwise; a checkpoint without the ``<mask>`` row (saved by a
fine-tuning task) stays without it.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from preprocess.gpt2_text import ADDED_TOKENS_FILE
from fairseq_defemb.add_tokens.initialise import (
    Target, baseline_rows, check_request, defemb_rows, nearest_neighbours, present_note, refuse_present, word_prompts,
)
from fairseq_defemb.add_tokens.definition_model import ensure_definition_model, gpt2_tokenizer
from fairseq_defemb.add_tokens.words import AddTokensError, read_words
from fairseq_defemb.recipes import CPU_BUDGET
from fairseq_defemb.atomic_io import atomic_output_dir, write_json
from preprocess.corpus.entries import SkipLog

LM_HEAD_BIASES = ("encoder.lm_head.bias", "decoder.lm_head.bias")
REPORT_FILE = "add_tokens.json"


def _gpt2_files(ckpt_dir: Path, encoder_json, vocab_bpe) -> tuple[Path, Path]:
    from fairseq_defemb.convert.export_hf import gpt2_files

    try:
        return gpt2_files(ckpt_dir, encoder_json, vocab_bpe)
    except ValueError as err:
        raise AddTokensError(str(err)) from None


def plan_targets(words, backend, encoder: dict[str, int], dictionary, replace: bool) -> tuple[list[Target], dict[str, int], list[str]]:
    """Targets (two forms per word: " word" and "word"), the new encoder entries and the new
    dict.txt symbols. A word with a form already in the dictionary is an error unless ``replace``."""
    next_bpe = max(encoder.values()) + 1
    next_row = len(dictionary) - 1  # the current <mask> row: new rows go there, <mask> after them
    targets, new_entries, new_symbols, present = [], {}, [], []
    chars = backend.bpe.byte_encoder
    for word in words:
        forms = [(" " + word.word, True), (word.word, False)]
        existing = {}
        for form, _ in forms:
            bpe_id = encoder.get("".join(chars[b] for b in form.encode("utf-8")))
            if bpe_id is not None and dictionary.index(str(bpe_id)) != dictionary.unk():
                existing[form] = dictionary.index(str(bpe_id))
        if existing and not replace:
            present.append(present_note(word, existing))
            continue
        for form, initial in forms:
            if form in existing:
                row = existing[form]
                targets.append(Target(word, form, initial, row, True, backend.split_without(row), dictionary[row]))
                continue
            key = "".join(chars[b] for b in form.encode("utf-8"))
            bpe_id = encoder.get(key, new_entries.get(key))
            if bpe_id is None:
                bpe_id = new_entries[key] = next_bpe
                next_bpe += 1
            new_symbols.append(str(bpe_id))
            targets.append(Target(word, form, initial, next_row, False, backend.glue(form), str(bpe_id)))
            next_row += 1
    refuse_present(present)
    return targets, new_entries, new_symbols


def grow(tensor: torch.Tensor, insert_at: int, new_rows: torch.Tensor) -> torch.Tensor:
    """``tensor`` with ``new_rows`` inserted before row ``insert_at`` (its dtype kept)."""
    return torch.cat([tensor[:insert_at], new_rows.to(tensor.dtype), tensor[insert_at:]])


def add_tokens_fairseq(*, checkpoint: str | Path, words: str | Path, init: str, out: str | Path,
                       definition_model: str | Path | None = None, definition_corpus: str | Path | None = None,
                       replace: bool = False, gpt2_encoder_json: str | Path | None = None, gpt2_vocab_bpe: str | Path | None = None,
                       max_prompt_tokens: int = 256, neighbours: int = 5, device: str = "cpu",
                       overwrite: bool = False, progress: bool = False, definition_updates: int = CPU_BUDGET.updates, workers: int = 1,
                       cache_dir: str | Path | None = None, say=print) -> dict:
    """Write ``out``: a copy of the fairseq checkpoint directory ``checkpoint`` with the words of
    ``words`` added (model.pt, dict.txt, the extended encoder.json, vocab.bpe, added_tokens.json,
    add_tokens.json = the returned report), atomically. See the module docstring for the layout.
    ``--init defemb`` with no ``definition_model`` builds the recommended one for this checkpoint
    (``definition_model.ensure_definition_model``: ``definition_updates``, ``cache_dir``)."""
    from preprocess.corpus.tokenizers import GPT2Backend
    from fairseq_defemb.data.vocabulary import load_model_dictionary
    from fairseq_defemb.surgery.checkpoint import load_checkpoint, tied_embedding

    ckpt_dir = Path(checkpoint)
    model_pt = ckpt_dir / "model.pt" if ckpt_dir.is_dir() else ckpt_dir
    ckpt_dir = model_pt.parent
    dict_path = ckpt_dir / "dict.txt"
    if not model_pt.is_file() or not dict_path.is_file():
        raise AddTokensError(f"--checkpoint {checkpoint}: needs model.pt and dict.txt (a fairseq checkpoint directory)")
    check_request(init=init, source=ckpt_dir, out=out, overwrite=overwrite)
    skips = SkipLog()
    new_words = read_words(words, skips)
    dictionary = load_model_dictionary(dict_path)  # + <mask>, as the pretraining tasks build it
    encoder_json, vocab_bpe = _gpt2_files(ckpt_dir, gpt2_encoder_json, gpt2_vocab_bpe)
    try:
        backend = GPT2Backend(dictionary, encoder_json, vocab_bpe, str(dict_path))
    except ValueError as err:
        raise AddTokensError(f"{err} (the fairseq side adds tokens to GPT-2 BPE models: BART, RoBERTa)") from None
    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    targets, new_entries, new_symbols = plan_targets(new_words, backend, encoder, dictionary, replace)

    state = load_checkpoint(model_pt)
    keys, matrix = tied_embedding(state["model"], model_pt)
    mask_row = len(dictionary) - 1
    if matrix.size(0) not in (mask_row, mask_row + 1):
        raise AddTokensError(f"{model_pt}: {matrix.size(0)} embedding rows, but {dict_path} gives {mask_row} symbols "
                             "(+ <mask>); pass the dict.txt the checkpoint was trained with")
    old = matrix.float().numpy()
    # placeholders past the dictionary + <mask>: never a real id, neither here nor in the definition model
    placeholders = [t.row if t.existing else len(dictionary) + i for i, t in enumerate(targets)]
    prompts = word_prompts(targets, placeholders, backend, max_prompt_tokens, skips)
    excluded = set(range(dictionary.nspecial)) | {mask_row} | {t.row for t in targets if t.existing}
    notes = {}
    built = None
    if init == "defemb":
        if not definition_model:
            definition_model, built = ensure_definition_model(
                fairseq_dir=ckpt_dir, tokenizer=gpt2_tokenizer(encoder_json, vocab_bpe), cache_dir=cache_dir,
                updates=definition_updates, device=device, workers=workers, progress=progress, say=say)
        rows, _counts = defemb_rows(definition_model, dict_path, placeholders, prompts, device=device, progress=progress,
                                    definition_corpus=definition_corpus)
    else:
        rows, notes = baseline_rows(init, old, targets, placeholders, prompts, excluded)

    new = torch.from_numpy(rows).to(matrix.dtype)
    added = [i for i, t in enumerate(targets) if not t.existing]
    replaced = [i for i, t in enumerate(targets) if t.existing]
    grown = grow(matrix, mask_row, new[added]) if added else matrix.clone()
    if replaced:
        grown[[targets[i].row for i in replaced]] = new[replaced]
    model_state = dict(state["model"])
    for key in keys:
        model_state[key] = grown
    for key in LM_HEAD_BIASES:
        if key in model_state and added:
            bias = model_state[key]
            # transformers' mean_resizing does the same for a new token's output bias
            model_state[key] = grow(bias, mask_row, bias.float().mean().repeat(len(added)))

    candidates = np.asarray([i for i in range(dictionary.nspecial, mask_row)
                             if not any(t.existing and t.row == i for t in targets)])
    from fairseq_defemb.analysis.neighbours import token_surfaces

    near = nearest_neighbours(rows, old, candidates, token_surfaces(dictionary, encoder_json), neighbours)
    norms = np.linalg.norm(old[candidates], axis=1)
    report = {
        "checkpoint": str(model_pt), "words_file": str(words), "init": init,
        "definition_model": str(definition_model) if definition_model else None, "definition_model_built": built,
        "out": str(out),
        "rows_before": int(matrix.size(0)), "rows_after": int(grown.size(0)),
        "mask_row": {"before": mask_row if matrix.size(0) > mask_row else None,
                     "after": mask_row + len(added) if matrix.size(0) > mask_row else None},
        "tied_keys": keys, "lm_head_bias": [k for k in LM_HEAD_BIASES if k in model_state],
        "existing_row_norm": {"mean": round(float(norms.mean()), 4), "median": round(float(np.median(norms)), 4)},
        "words": [], "skipped_lines": skips.as_dict(), **notes,
    }
    for i, t in enumerate(targets):
        report["words"].append({
            "word": t.word.word, "form": t.form, "id": t.row, "symbol": t.symbol, "replaced": t.existing,
            "definitions": len(t.word.entries), "lines": t.word.lines,
            "definitions_used": [e.definition for e in t.word.entries],
            "norm": round(float(np.linalg.norm(rows[i])), 4), "neighbours": near[i],
        })
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        torch.save({**state, "model": model_state}, tmp / "model.pt")
        text = dict_path.read_text(encoding="utf-8")
        (tmp / "dict.txt").write_text(text + ("" if not text or text.endswith("\n") else "\n")
                                      + "".join(f"{s} 0\n" for s in new_symbols), encoding="utf-8")
        (tmp / "encoder.json").write_text(json.dumps({**encoder, **new_entries}, ensure_ascii=False), encoding="utf-8")
        shutil.copyfile(vocab_bpe, tmp / "vocab.bpe")
        write_json(tmp / ADDED_TOKENS_FILE, {"forms": {t.form: int(t.symbol) for t in targets}})
        write_json(tmp / REPORT_FILE, report)
    return report
