"""New tokens in a transformers directory (BART, RoBERTa: byte-level BPE; BERT: WordPiece).

``tokenizer.add_tokens`` then ``resize_token_embeddings``; the new rows are set from the chosen
initialiser and the tied output head follows (transformers ties it to the input embeddings).
A vocabulary-sized output bias (RoBERTa's ``lm_head.bias``, BART's ``final_logits_bias``) gets
the mean of its old entries at the new ids, as transformers' ``mean_resizing`` does.

Forms: byte-level BPE gets two added tokens per word, " covid" (word-initial, so the space
before it is not left as a lone "Ġ") and "covid" (attached, ``single_word``: not inside
"anticovid"); transformers matches added tokens literally, so " covid" also matches the start
of " covids" (the fairseq side's encoder matches on GPT-2's word boundaries only). WordPiece
gets one token per word (``single_word``), as BERT's vocabulary has no space forms.

``--init defemb``: the definition model must be trained over the dict.txt ``defemb-convert-hf``
writes for this directory (its hash is checked when the model is loaded). For BART/RoBERTa a fairseq
id is the transformers id; for BERT the converted dictionary moves the specials (vocab.txt line k
is fairseq id ``DictionaryPlan.rows[k]``), so the prompts, tokenized here by the transformers
tokenizer, are mapped to fairseq ids before the definition model reads them. The predicted rows
need no mapping: the embedding matrix was permuted, not transformed, so a row is a row of either.
"""
import contextlib
import tempfile
from pathlib import Path

import numpy as np
import torch

from fairseq_defemb.add_tokens.definition_model import (converted, default_cache_dir, ensure_definition_model,
                                                     tokenizer_of_hf_dir)
from fairseq_defemb.add_tokens.initialise import (
    Target, baseline_rows, check_request, defemb_rows, nearest_neighbours, present_note, refuse_present, word_prompts,
)
from fairseq_defemb.add_tokens.words import AddTokensError, read_words
from fairseq_defemb.recipes import CPU_BUDGET
from fairseq_defemb.atomic_io import atomic_output_dir, write_json
from preprocess.corpus.entries import SkipLog
from preprocess.corpus.tokenizers import SubwordBackend

REPORT_FILE = "add_tokens.json"
OUTPUT_BIASES = ("lm_head.bias", "final_logits_bias")


class _Specials:
    """What the prompt template asks of a dictionary: its sentence boundaries and unknown."""

    def __init__(self, tokenizer):
        self._bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        self._eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        self._unk = tokenizer.unk_token_id

    def bos(self) -> int:
        return self._bos

    def eos(self) -> int:
        return self._eos

    def unk(self) -> int:
        return self._unk


class TransformersBackend(SubwordBackend):
    """The prompt template's text pieces through the transformers tokenizer (its ids)."""

    name = "transformers"

    def __init__(self, tokenizer, byte_level: bool):
        super().__init__(_Specials(tokenizer))
        self.tokenizer, self.byte_level = tokenizer, byte_level

    def glue(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def text(self, text: str) -> list[int]:
        return self.glue(" " + text if self.byte_level else text)


def _load(hf_model: Path):
    import transformers

    config = transformers.AutoConfig.from_pretrained(hf_model, local_files_only=True)
    architectures = getattr(config, "architectures", None) or []
    model_cls = getattr(transformers, architectures[0], None) if architectures else None
    if model_cls is None or config.model_type not in ("bart", "roberta", "bert"):
        raise AddTokensError(f"--hf-model {hf_model}: model_type {config.model_type!r} ({architectures}); "
                             "BART, RoBERTa and BERT directories are supported")
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_model, local_files_only=True)
    model = model_cls.from_pretrained(hf_model, local_files_only=True)
    return config, tokenizer, model


def _definition_dictionary(hf_model: Path, config, tmp: Path) -> tuple[Path, np.ndarray | None]:
    """The dict.txt defemb-convert-hf writes for this directory, and the fairseq id of each
    transformers id when they differ (BERT), else None."""
    if config.model_type == "bert":
        from fairseq_defemb.convert.hf_bert import plan_dictionary, read_vocab

        vocab_path = hf_model / "vocab.txt"
        if not vocab_path.is_file():
            raise AddTokensError(f"--init defemb on a BERT directory needs {vocab_path} (the WordPiece vocabulary "
                                 "defemb-convert-hf read when the definition model's dictionary was made)")
        plan = plan_dictionary(read_vocab(vocab_path), vocab_path)
        (tmp / "dict.txt").write_text("".join(f"{line}\n" for line in plan.lines), encoding="utf-8")
        return tmp / "dict.txt", np.asarray(plan.rows, dtype=np.int64)
    from fairseq_defemb.convert.gpt2_vocab import hf_to_fairseq, read_hf_tokenizer, write_fairseq_vocabulary

    vocab, merges, added, vocab_path = read_hf_tokenizer(hf_model)
    write_fairseq_vocabulary(tmp, hf_to_fairseq(vocab, merges, added, vocab_path, config.vocab_size))
    return tmp / "dict.txt", None


@contextlib.contextmanager
def _transformers_bars(enabled: bool):
    """transformers' own progress bars (loading and writing weights) as ``--no-progress`` says, restored after."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def add_tokens_hf(*, hf_model: str | Path, words: str | Path, init: str, out: str | Path,
                  definition_model: str | Path | None = None, definition_corpus: str | Path | None = None,
                  replace: bool = False, max_prompt_tokens: int = 256,
                  neighbours: int = 5, device: str = "cpu", overwrite: bool = False, progress: bool = False,
                  definition_updates: int = CPU_BUDGET.updates, workers: int = 1, cache_dir: str | Path | None = None, say=print) -> dict:
    """Write ``out``: the transformers model and tokenizer of ``hf_model`` with the words of ``words``
    added and initialised by ``init`` (see the module docstring), and add_tokens.json (the returned
    report), atomically. ``--init defemb`` with no ``definition_model`` builds the recommended one
    on the model's fairseq conversion (``definition_model.ensure_definition_model``)."""
    from transformers import AddedToken

    hf_model = Path(hf_model)
    if not (hf_model / "config.json").is_file():
        raise AddTokensError(f"--hf-model {hf_model}: no config.json (a transformers model directory)")
    check_request(init=init, source=hf_model, out=out, overwrite=overwrite)
    skips = SkipLog()
    new_words = read_words(words, skips)
    with _transformers_bars(progress):
        config, tokenizer, model = _load(hf_model)
    byte_level = config.model_type != "bert"
    backend = TransformersBackend(tokenizer, byte_level)
    old = model.get_input_embeddings().weight.detach().clone()
    vocab_before = len(tokenizer)

    def single_id(form: str) -> int | None:
        ids = backend.glue(form)
        return ids[0] if len(ids) == 1 and ids[0] != tokenizer.unk_token_id else None

    targets, present, to_add = [], [], []
    for word in new_words:
        forms = [(" " + word.word, True), (word.word, False)] if byte_level else [(word.word, True)]
        existing = {form: single_id(form) for form, _ in forms if single_id(form) is not None}
        if existing and not replace:
            present.append(present_note(word, existing))
            continue
        for form, initial in forms:
            if form in existing:
                targets.append(Target(word, form, initial, existing[form], True, [], form))
            else:
                targets.append(Target(word, form, initial, -1, False, backend.glue(form), form))
                to_add.append(AddedToken(form, single_word=not form.startswith(" "), normalized=not byte_level))
    refuse_present(present)
    first_placeholder = max(vocab_before, old.size(0)) + 1
    placeholders = [t.row if t.existing else first_placeholder + i for i, t in enumerate(targets)]
    prompts = word_prompts(targets, placeholders, backend, max_prompt_tokens, skips)
    specials = set(tokenizer.all_special_ids)
    excluded = specials | {t.row for t in targets if t.existing}
    matrix = old.float().numpy()
    notes, built = {}, None
    if init == "defemb":
        if not definition_model:
            cache = Path(cache_dir or default_cache_dir())
            fairseq_dir = converted(hf_model, cache, say)
            definition_model, built = ensure_definition_model(
                fairseq_dir=fairseq_dir, tokenizer=tokenizer_of_hf_dir(hf_model, fairseq_dir), cache_dir=cache,
                updates=definition_updates, device=device, workers=workers, progress=progress, say=say)
        with tempfile.TemporaryDirectory(prefix="defemb-add-tokens-dict-") as tmp:
            dict_path, fairseq_ids = _definition_dictionary(hf_model, config, Path(tmp))
            rows, _counts = defemb_rows(definition_model, dict_path, placeholders, prompts, id_map=fairseq_ids,
                                        device=device, progress=progress, definition_corpus=definition_corpus)
    else:
        rows, notes = baseline_rows(init, matrix, targets, placeholders, prompts, excluded)

    tokenizer.add_tokens(to_add)
    for t in targets:
        if not t.existing:
            t.row = tokenizer.convert_tokens_to_ids(t.form)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[[t.row for t in targets]] = torch.from_numpy(rows).to(embeddings.dtype)
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            # lm_head.bias is (V,), BART's final_logits_bias (1, V)
            if name.endswith(OUTPUT_BIASES) and tensor.dim() <= 2 and tensor.shape[-1] == len(tokenizer):
                tensor[..., old.size(0):] = tensor[..., :old.size(0)].mean()
    model.tie_weights()

    surfaces = [tokenizer.convert_tokens_to_string([t]).strip() for t in tokenizer.convert_ids_to_tokens(range(old.size(0)))]
    candidates = np.asarray([i for i in range(old.size(0)) if i not in excluded])
    near = nearest_neighbours(rows, matrix, candidates, surfaces, neighbours)
    norms = np.linalg.norm(matrix[candidates], axis=1)
    report = {
        "hf_model": str(hf_model), "words_file": str(words), "init": init,
        "definition_model": str(definition_model) if definition_model else None, "definition_model_built": built,
        "out": str(out),
        "rows_before": int(old.size(0)), "rows_after": int(model.get_input_embeddings().weight.size(0)),
        "existing_row_norm": {"mean": round(float(norms.mean()), 4), "median": round(float(np.median(norms)), 4)},
        "words": [{"word": t.word.word, "form": t.form, "id": int(t.row), "symbol": t.symbol, "replaced": t.existing,
                   "definitions": len(t.word.entries), "lines": t.word.lines,
            "definitions_used": [e.definition for e in t.word.entries],
                   "norm": round(float(np.linalg.norm(rows[i])), 4), "neighbours": near[i]}
                  for i, t in enumerate(targets)],
        "skipped_lines": skips.as_dict(), **notes,
    }
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        with _transformers_bars(progress):
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / REPORT_FILE, report)
    return report
