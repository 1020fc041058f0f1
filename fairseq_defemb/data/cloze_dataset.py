"""Definition-cloze examples: the corrupted prompt and where to read each masked subword.

Two corruptions, as in the paper (Section 5.1, Figure 4):

* ``bert`` (encoder-only PLMs): every headword subword is a target; each is replaced
  by ``<mask>`` with ``mask_prob``, by a random token with ``random_token_prob`` and
  left unchanged otherwise. Its embedding is read at its own position, g(k) = k.
* ``sentinel`` (encoder-decoder PLMs): every headword variant span becomes one
  ``<mask>`` in the encoder input (BART's infilling sentinel); the decoder is fed
  ``</s>`` followed by the target ``y = <mask> c_1 ... <mask> c_n`` and, being causal,
  its output at index t has seen exactly the prefix up to the token preceding
  ``y[t]``: g(k) in one teacher-forced pass.

``predict`` mode is deterministic: for ``bert`` one item per headword occurrence with
only that subword masked ("one mask at a time"); for ``sentinel`` one item per prompt.

``mask_headword_everywhere`` (not in the paper) also replaces by ``<mask>`` every id of the
headword's subwords that occurs outside the variant spans (inside the definition, say), in
every mode, so no model can copy the headword instead of reading its definition.

``hidden_ids`` (the held-out tokens when predicting a hold-out split) are replaced by
``<mask>`` wherever they occur in the model's input, so no copy of a held-out token in its own
definition or in another variant hands the model the row it is asked to predict.

Everything is computed from numpy index arrays over the memory-mapped corpus (no Python object
per prompt): the occurrence table, the sizes, and whole batches (:meth:`collate_indices`). An
item is only its index until the collater builds its batch, so torch's DataLoader fetches a
batch at once (``__getitems__``); ``dataset[i]`` is the one-item batch's row, for inspection.
"""
from typing import Literal

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from fairseq_defemb.data.corpus_format import CorpusFormatError, CorpusSplit
from fairseq_defemb.data.seeded_draws import seeded_uniform_and_integers

Corruption = Literal["bert", "sentinel"]


class _IndexArrays:
    """The corpus as flat arrays: prompt ids back to back, every span, and per prompt its spans."""

    def __init__(self, corpus: CorpusSplit):
        self.tokens, self.prompt_start = corpus.prompt_tokens()
        self.prompt_sizes = corpus.prompt_sizes()
        bounds = corpus.span_bounds()
        self.span_begin, self.span_end = bounds[:, 0], bounds[:, 1]
        self.spans_per_prompt = corpus.span_counts()
        self.first_span = np.concatenate([[0], np.cumsum(self.spans_per_prompt)])
        span_prompt, widths = self.span_prompt(), self.span_widths()
        self.subwords = np.bincount(span_prompt, weights=widths, minlength=len(corpus)).astype(np.int64)
        # Batches are built on spans in order, apart (as defemb-corpus writes them): a corpus
        # with others would be read differently from its per-item meaning, so it is refused.
        bad = (widths <= 0) | (self.span_end > self.prompt_sizes[span_prompt])
        bad[1:] |= (span_prompt[1:] == span_prompt[:-1]) & (self.span_begin[1:] < self.span_end[:-1])
        if bad.any():
            first = int(span_prompt[np.argmax(bad)])
            raise CorpusFormatError(f"{corpus.prefix}.spans: prompt {first} has empty, overlapping, unordered or "
                                    "out-of-prompt spans; rebuild the corpus with defemb-corpus")

    # Per-span arrays on demand, not kept: 16 bytes a span (93 MB at the paper's 1.45M prompts) that a
    # training process would hold for its whole run, for what load-time work reads once.
    def span_prompt(self) -> np.ndarray:
        """Each span's prompt index."""
        return np.repeat(np.arange(len(self.spans_per_prompt), dtype=np.int64), self.spans_per_prompt)

    def span_widths(self) -> np.ndarray:
        """Each span's number of subwords."""
        return (self.span_end - self.span_begin).astype(np.int64)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """starts[0], starts[0]+1, ..., starts[0]+lengths[0]-1, starts[1], ...: the flat indices of
    several ranges back to back."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)


def _padded(values: np.ndarray, lengths: np.ndarray, pad: int) -> np.ndarray:
    """Rows of ``lengths`` taken in turn from ``values``, right-padded (fairseq's collate_tokens)."""
    out = np.full((len(lengths), int(lengths.max())), pad, dtype=np.int64)
    out[np.arange(out.shape[1]) < lengths[:, None]] = values
    return out


class DefinitionClozeDataset(FairseqDataset):
    def __init__(
        self,
        corpus: CorpusSplit,
        pad_idx: int,
        eos_idx: int,
        mask_idx: int,
        random_token_ids: np.ndarray,
        corruption: Corruption | None = None,
        mask_prob: float = 0.5,
        random_token_prob: float = 0.25,
        seed: int = 1,
        predict: bool = False,
        fixed_corruption: bool = False,
        hidden_ids: np.ndarray | None = None,
        mask_headword_everywhere: bool = False,
    ):
        self.corpus = corpus
        self.pad_idx, self.eos_idx, self.mask_idx = pad_idx, eos_idx, mask_idx
        self.random_token_ids = np.asarray(random_token_ids)
        self.corruption = corruption
        self.mask_prob, self.random_token_prob = mask_prob, random_token_prob
        self.seed = seed
        self.predict = predict
        # Validation draws the same corruption every epoch, so its loss is comparable.
        self.fixed_corruption = fixed_corruption
        self.mask_headword_everywhere = mask_headword_everywhere
        self.epoch = 1
        self._arrays: _IndexArrays | None = None
        self._occurrences = None
        self._lengths = None
        self.hidden_ids = None if hidden_ids is None or len(hidden_ids) == 0 else np.unique(np.asarray(hidden_ids, np.int64))

    # -- what an index means -------------------------------------------------
    def set_corruption(self, corruption: Corruption) -> None:
        self.corruption = corruption
        self._occurrences = self._lengths = None

    @property
    def arrays(self) -> _IndexArrays:
        if self._arrays is None:
            self._arrays = _IndexArrays(self.corpus)
        return self._arrays

    @property
    def occurrences(self) -> np.ndarray:
        """(prompt, position, token id) of every headword subword, one row each, prompts in order and
        spans in order within a prompt: the items of bert-style prediction, and what prediction
        filters by token."""
        if self._occurrences is None:
            a = self.arrays
            widths = a.span_widths()
            prompt = np.repeat(a.span_prompt(), widths)
            position = _ranges(a.span_begin.astype(np.int64), widths)
            token = a.tokens[a.prompt_start[prompt] + position].astype(np.int64)
            self._occurrences = np.stack([prompt, position, token], axis=1)
        return self._occurrences

    def _one_mask_at_a_time(self) -> bool:
        return self.predict and self.corruption == "bert"

    def __len__(self) -> int:
        if self.corruption is None:
            return len(self.corpus)
        return len(self.occurrences) if self._one_mask_at_a_time() else len(self.corpus)

    def prompt_index(self, index: int) -> int:
        return int(self.occurrences[index, 0]) if self._one_mask_at_a_time() else index

    def item_prompts(self) -> np.ndarray:
        """The prompt of every item (``prompt_index`` of ``range(len(self))``)."""
        return self.occurrences[:, 0] if self._one_mask_at_a_time() else np.arange(len(self))

    # -- items ---------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False  # the corruption is redrawn every epoch

    def __getitem__(self, index: int) -> dict:
        """Item ``index`` as the row of its one-item batch: source, positions (where its targets are
        read), target (the ids there), and for sentinel the decoder input prev_output_tokens."""
        batch = self.collate_indices([index])
        net_input = batch["net_input"]
        item = {"id": index, "definition": int(batch["definition"][0]), "source": net_input["src_tokens"][0],
                "positions": torch.nonzero(net_input["predict_mask"][0]).flatten(), "target": batch["target"]}
        if self.corruption == "sentinel":
            item["prev_output_tokens"] = net_input["prev_output_tokens"][0]
        return item

    def __getitems__(self, indices: list[int]) -> list[dict]:
        # torch's DataLoader fetches a batch through this hook: the collater builds it at once.
        return [{"id": int(i)} for i in indices]

    # -- batching ------------------------------------------------------------
    def _item_lengths(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Per item: encoder input length, and for sentinel the decoder's (targets, sentinels, </s>)."""
        if self._lengths is None:
            a = self.arrays
            if self.corruption == "sentinel":
                source = a.prompt_sizes - a.subwords + a.spans_per_prompt  # each span -> one <mask>
                target = a.subwords + a.spans_per_prompt + 1
            else:
                source, target = a.prompt_sizes, None
            if self._one_mask_at_a_time():
                source = source[self.occurrences[:, 0]]
            self._lengths = (source, target)
        return self._lengths

    def num_tokens(self, index: int) -> int:
        return int(self.num_tokens_vec(np.asarray([index]))[0])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        source, target = self._item_lengths()
        return source[indices] if target is None else np.maximum(source[indices], target[indices])

    def size(self, index: int):
        source, target = self._item_lengths()
        return int(source[index]) if target is None else (int(source[index]), int(target[index]))

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes) -> tuple[np.ndarray, list]:
        """fairseq's per-index check (a size within every given maximum) over the length arrays at once."""
        indices = np.asarray(indices, dtype=np.int64)
        source, target = self._item_lengths()
        limits = max_sizes if isinstance(max_sizes, (tuple, list)) else (max_sizes,)
        keep = np.ones(len(indices), dtype=bool)
        for lengths, limit in zip((source, target), limits):
            if lengths is not None and limit is not None:
                keep &= lengths[indices] <= limit
        return indices[keep], indices[~keep].tolist()

    @property
    def sizes(self) -> np.ndarray:
        prompt_sizes = self.arrays.prompt_sizes
        return prompt_sizes[self.occurrences[:, 0]] if self._one_mask_at_a_time() else prompt_sizes

    def ordered_indices(self) -> np.ndarray:
        # Length buckets: batches of similar lengths waste little on padding.
        if self.predict:
            return np.argsort(self.sizes, kind="stable")
        with data_utils.numpy_seed(self.seed, self.epoch):
            order = np.random.permutation(len(self))
        return order[np.argsort(self.sizes[order], kind="stable")]

    def _seed_of(self, *keys: int) -> int:
        """The seed ``data_utils.numpy_seed(seed, *keys)`` sets."""
        return int(hash((self.seed, *keys)) % 1e6)

    def collater(self, samples: list[dict]) -> dict:
        return self.collate_indices([s["id"] for s in samples])

    def collate_indices(self, indices) -> dict:
        """The batch of items ``indices``, built from the index arrays at once: encoder input
        (padded), where to read predictions (``predict_mask``, row-major = the order of
        ``target``), the target ids and the row of each."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) == 0:
            return {}
        if self.corruption is None:
            raise RuntimeError("corruption style not set: the task sets it when it builds the model")
        a = self.arrays
        prompts = self.occurrences[indices, 0] if self._one_mask_at_a_time() else indices
        rows = len(indices)
        lengths = a.prompt_sizes[prompts]
        row_start = np.cumsum(lengths) - lengths  # each row's offset in the flat batch
        tokens = a.tokens[_ranges(a.prompt_start[prompts], lengths)].astype(np.int64)
        source = tokens
        if not self._one_mask_at_a_time() or self.mask_headword_everywhere:
            # Spans of the batch, flat, and which positions of the flat batch they cover.
            counts = a.spans_per_prompt[prompts]
            span = _ranges(a.first_span[prompts], counts)
            span_row = np.repeat(np.arange(rows), counts)
            begin = row_start[span_row] + a.span_begin[span]
            end = row_start[span_row] + a.span_end[span]
            edges = np.bincount(begin, minlength=len(tokens) + 1) - np.bincount(end, minlength=len(tokens) + 1)
            inside = np.cumsum(edges[:-1]) > 0
        if self.mask_headword_everywhere:
            # Only positions outside the spans change, so the targets (span ids) stay the prompt's.
            row_of = np.repeat(np.arange(rows), lengths)
            keys = row_of * (int(tokens.max()) + 1) + tokens
            echo = ~inside & np.isin(keys, keys[inside])
            source = np.where(echo, self.mask_idx, tokens)
        if self.corruption == "bert":
            if self._one_mask_at_a_time():
                flat, per_row = row_start + self.occurrences[indices, 1], np.ones(rows, dtype=np.int64)
            else:
                flat, per_row = np.nonzero(inside)[0], a.subwords[prompts]
            source = self._bert_corrupted(source, flat, indices, per_row)
            src, src_lengths = _padded(self._hide(source), lengths, self.pad_idx), lengths
            read_rows = np.repeat(np.arange(rows), per_row)
            read_cols, target = flat - row_start[read_rows], tokens[flat]
            net_input, mask_shape = {}, src.shape
        else:
            src, src_lengths, prev, read_rows, read_cols, target = self._sentinel(
                source, tokens, inside, begin, end, span_row, lengths, a.subwords[prompts], counts)
            net_input = {"prev_output_tokens": torch.from_numpy(prev)}
            mask_shape = prev.shape
        predict_mask = torch.zeros(mask_shape, dtype=torch.bool)
        predict_mask[torch.from_numpy(read_rows), torch.from_numpy(read_cols)] = True
        net_input = {"src_tokens": torch.from_numpy(src), "src_lengths": torch.from_numpy(src_lengths.astype(np.int64)),
                     **net_input, "predict_mask": predict_mask}
        return {
            "id": torch.from_numpy(indices),
            "definition": torch.from_numpy(prompts.astype(np.int64)),
            "net_input": net_input,
            "target": torch.from_numpy(target),
            "target_row": torch.from_numpy(read_rows.astype(np.int64)),
            "nsentences": rows,
            "ntokens": int(src_lengths.sum()),
        }

    def _bert_corrupted(self, source: np.ndarray, flat: np.ndarray, indices: np.ndarray,
                        per_row: np.ndarray) -> np.ndarray:
        """``source`` with the targets at ``flat`` (``per_row`` of them per item) corrupted: masked
        when predicting (one per item), else each <mask> / random / unchanged as drawn from the
        seed of (seed, epoch, index)."""
        source = source.copy()
        if self._one_mask_at_a_time():
            source[flat] = self.mask_idx
            return source
        epoch = 0 if self.fixed_corruption else self.epoch
        # fairseq's numpy_seed(seed, epoch, index) draws of the per-item code: rand, then the
        # randint that choice(random_token_ids, n) draws with.
        draw, random_ids = seeded_uniform_and_integers([self._seed_of(epoch, index) for index in indices.tolist()],
                                                       per_row, len(self.random_token_ids))
        to_mask = draw < self.mask_prob
        to_random = (draw >= self.mask_prob) & (draw < self.mask_prob + self.random_token_prob)
        source[flat[to_mask]] = self.mask_idx
        source[flat[to_random]] = self.random_token_ids[random_ids[to_random]]
        return source

    def _sentinel(self, source, tokens, inside, begin, end, span_row, lengths, subwords, counts):
        """BART infilling: each span -> one <mask> in the encoder input; the decoder target is
        ``<mask> c_1 .. c_n`` per span then ``</s>``, fed shifted (``</s>`` first), and the
        predictions are read at the span tokens' places in it."""
        rows = len(lengths)
        is_begin = np.zeros(len(tokens), dtype=bool)
        is_begin[begin] = True
        keep = ~inside | is_begin
        src_lengths = lengths - subwords + counts
        src = _padded(self._hide(np.where(is_begin, self.mask_idx, source)[keep]), src_lengths, self.pad_idx)
        # The decoder side: span j's <mask> lands after every earlier span's 1 + width entries and
        # one </s> per earlier row; its tokens follow it.
        widths = end - begin
        target_lengths = subwords + counts + 1
        out_start = np.cumsum(1 + widths) - (1 + widths) + span_row
        flat_target = np.full(int(target_lengths.sum()), self.eos_idx, dtype=np.int64)
        flat_target[out_start] = self.mask_idx
        slots = _ranges(out_start + 1, widths)
        flat_target[slots] = tokens[_ranges(begin, widths)]
        target_rows = _padded(flat_target, target_lengths, self.pad_idx)
        prev = np.full_like(target_rows, self.pad_idx)
        prev[:, 0] = self.eos_idx
        prev[:, 1:] = target_rows[:, :-1]
        prev[np.arange(prev.shape[1]) >= target_lengths[:, None]] = self.pad_idx
        prev = self._hide(prev, valid=np.arange(prev.shape[1]) < target_lengths[:, None])
        read_rows = np.repeat(np.arange(rows), subwords)
        read_cols = slots - (np.cumsum(target_lengths) - target_lengths)[read_rows]
        return src, src_lengths, prev, read_rows, read_cols, flat_target[slots]

    def _hide(self, tokens: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """``tokens`` with every held-out id (where ``valid``) replaced by <mask>."""
        if self.hidden_ids is None:
            return tokens
        hit = np.isin(tokens, self.hidden_ids)
        return np.where(hit if valid is None else hit & valid, self.mask_idx, tokens)
