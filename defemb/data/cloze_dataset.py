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
"""
from typing import Literal

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from defemb.data.corpus_format import CorpusSplit
from defemb.data.headword import echo_positions

Corruption = Literal["bert", "sentinel"]


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
        self._occurrences = None
        self.hidden_ids = None if hidden_ids is None or len(hidden_ids) == 0 else torch.as_tensor(hidden_ids, dtype=torch.long)

    # -- what an index means -------------------------------------------------
    def set_corruption(self, corruption: Corruption) -> None:
        self.corruption = corruption
        self._occurrences = None

    @property
    def occurrences(self) -> np.ndarray:
        """(prompt, position, token id) of every headword subword, one row each: the items
        of bert-style prediction, and what prediction filters by token."""
        if self._occurrences is None:
            rows = []
            for i in range(len(self.corpus)):
                spans = self.corpus.spans[i].numpy().astype(np.int64).reshape(-1, 2)
                positions = np.concatenate([np.arange(s, e) for s, e in spans])
                tokens = self.corpus.prompts[i].numpy()[positions].astype(np.int64)
                rows.append(np.stack([np.full_like(positions, i), positions, tokens], axis=1))
            self._occurrences = np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)
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
        if self.corruption is None:
            raise RuntimeError("corruption style not set: the task sets it when it builds the model")
        prompt_idx = self.prompt_index(index)
        prompt = self.corpus.prompts[prompt_idx].long()
        spans = self.corpus.spans_of(prompt_idx)
        if self.mask_headword_everywhere:
            # Only positions outside the spans change, so the targets (span ids) stay the prompt's.
            prompt = prompt.clone()
            prompt[torch.from_numpy(echo_positions(prompt.numpy(), spans.numpy()))] = self.mask_idx
        if self.corruption == "bert":
            item = self._bert_item(index, prompt, spans)
        else:
            item = self._sentinel_item(prompt, spans)
        item["id"] = index
        item["definition"] = prompt_idx
        return item

    def _bert_item(self, index: int, prompt: torch.Tensor, spans: torch.Tensor) -> dict:
        source = prompt.clone()
        if self._one_mask_at_a_time():
            positions = torch.tensor([int(self.occurrences[index, 1])])
            source[positions] = self.mask_idx
        else:
            positions = torch.cat([torch.arange(s, e) for s, e in spans.tolist()]).unique(sorted=True)
            epoch = 0 if self.fixed_corruption else self.epoch
            with data_utils.numpy_seed(self.seed, epoch, index):
                draw = np.random.rand(len(positions))
                random_ids = np.random.choice(self.random_token_ids, len(positions))
            to_mask = torch.from_numpy(draw < self.mask_prob)
            to_random = torch.from_numpy((draw >= self.mask_prob) & (draw < self.mask_prob + self.random_token_prob))
            source[positions[to_mask]] = self.mask_idx
            source[positions[to_random]] = torch.from_numpy(random_ids).long()[to_random]
        return {"source": self._hide(source), "positions": positions, "target": prompt[positions]}

    def _hide(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.hidden_ids is None:
            return tokens
        return tokens.masked_fill(torch.isin(tokens, self.hidden_ids), self.mask_idx)

    def _sentinel_item(self, prompt: torch.Tensor, spans: torch.Tensor) -> dict:
        sentinel = torch.tensor([self.mask_idx])
        source_parts, target_parts, positions = [], [], []
        cursor, target_len = 0, 0
        for start, end in spans.tolist():
            source_parts += [prompt[cursor:start], sentinel]
            target_parts += [sentinel, prompt[start:end]]
            positions.extend(range(target_len + 1, target_len + 1 + end - start))
            target_len += 1 + end - start
            cursor = end
        source_parts.append(prompt[cursor:])
        target = torch.cat(target_parts + [torch.tensor([self.eos_idx])])
        positions = torch.tensor(positions)
        return {
            "source": self._hide(torch.cat(source_parts)),
            "prev_output_tokens": self._hide(torch.cat([torch.tensor([self.eos_idx]), target[:-1]])),
            "positions": positions,
            "target": target[positions],
        }

    # -- batching ------------------------------------------------------------
    def _source_len(self, index: int) -> int:
        prompt_idx = self.prompt_index(index)
        length = int(self.corpus.prompts.sizes[prompt_idx])
        if self.corruption == "sentinel":
            spans = self.corpus.spans_of(prompt_idx)
            length -= int((spans[:, 1] - spans[:, 0] - 1).sum())
        return length

    def _target_len(self, index: int) -> int:
        spans = self.corpus.spans_of(self.prompt_index(index))
        return int((spans[:, 1] - spans[:, 0] + 1).sum()) + 1

    def num_tokens(self, index: int) -> int:
        if self.corruption == "sentinel":
            return max(self._source_len(index), self._target_len(index))
        return self._source_len(index)

    def size(self, index: int):
        if self.corruption == "sentinel":
            return (self._source_len(index), self._target_len(index))
        return self._source_len(index)

    @property
    def sizes(self) -> np.ndarray:
        prompt_sizes = self.corpus.prompts.sizes
        return prompt_sizes[self.occurrences[:, 0]] if self._one_mask_at_a_time() else prompt_sizes

    def ordered_indices(self) -> np.ndarray:
        # Length buckets: batches of similar lengths waste little on padding.
        if self.predict:
            return np.argsort(self.sizes, kind="stable")
        with data_utils.numpy_seed(self.seed, self.epoch):
            order = np.random.permutation(len(self))
        return order[np.argsort(self.sizes[order], kind="stable")]

    def collater(self, samples: list[dict]) -> dict:
        if not samples:
            return {}
        source = data_utils.collate_tokens([s["source"] for s in samples], self.pad_idx)
        src_lengths = torch.tensor([len(s["source"]) for s in samples])
        counts = torch.tensor([len(s["positions"]) for s in samples])
        rows = torch.repeat_interleave(torch.arange(len(samples)), counts)
        columns = torch.cat([s["positions"] for s in samples])
        net_input = {"src_tokens": source, "src_lengths": src_lengths}
        if self.corruption == "sentinel":
            prev = data_utils.collate_tokens([s["prev_output_tokens"] for s in samples], self.pad_idx)
            net_input["prev_output_tokens"] = prev
            mask_shape = prev.shape
        else:
            mask_shape = source.shape
        predict_mask = torch.zeros(mask_shape, dtype=torch.bool)
        predict_mask[rows, columns] = True
        net_input["predict_mask"] = predict_mask
        return {
            "id": torch.tensor([s["id"] for s in samples]),
            "definition": torch.tensor([s["definition"] for s in samples]),
            "net_input": net_input,
            # Row-major order of predict_mask == order of the concatenated positions,
            # because each item's positions are sorted and unique.
            "target": torch.cat([s["target"] for s in samples]),
            "target_row": rows,
            "nsentences": len(samples),
            "ntokens": int(src_lengths.sum()),
        }
