"""The same sentences through a fairseq model and its transformers twin: token ids, hidden
states, LM logits and (BART) greedy and beam-4 generations.

fairseq's side is what its hub interfaces do: ``<s> `` + the BPE ids + `` </s>`` through the
dictionary (GPT-2 BPE), or WordPiece pieces between ``<s>``/``</s>`` (a converted BERT). Generation
uses fairseq's SequenceGenerator and transformers' ``generate`` with the settings that make
them the same search: both start the decoder with ``</s>``, block ``<pad>``, forbid ``</s>``
as the first token (fairseq's min_len 1 = HF's min_length 2, which counts the start token),
force ``</s>`` after ``max_len_b`` tokens keeping its log-probability (fairseq's rule; transformers'
own ``forced_eos_token_id`` sets it to 0 and so reorders beams that hit the limit, hence the
small processor below), normalise finished beams by length ** 1.0 and stop
once ``beam`` hypotheses have finished.
"""
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

TOLERANCE = 1e-4  # fp32, the bound for hidden states and logits
GENERATE_TOKENS = 20
VERIFY_SENTENCES = [
    " The sediment settled at the bottom of the river. ",
    "A quagga, last seen in 1883, stood 1.3 m tall -- 4'3\"!",
    "Definitions give rare tokens meaning: café, naïve, Zürich, 東京, ☃.",
    "  Hello\tworld  ",
    "#42: (x+y)^2 = x^2 + 2xy + y^2?",
]


@dataclass
class Comparison:
    sentences: int = 0
    token_mismatches: list[str] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)  # more tokens than the model has positions: not run
    max_abs_hidden: float = 0.0  # RoBERTa/BERT: final encoder states; BART: decoder's
    max_abs_encoder: float | None = None  # BART only
    max_abs_logits: float | None = None  # None: the reference has no LM head
    largest_hidden_value: float = 0.0  # the scale the differences compare against
    greedy_identical: int | None = None  # BART: sentences whose outputs are identical
    beam4_identical: int | None = None
    generation_mismatches: list[str] = field(default_factory=list)
    tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        diffs = [self.max_abs_hidden, self.max_abs_logits or 0.0, self.max_abs_encoder or 0.0]
        return (not self.token_mismatches and not self.generation_mismatches and len(self.too_long) < self.sentences
                and max(diffs) <= self.tolerance)

    def report(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def gpt2_fairseq_ids(dictionary: Any, bpe: Any) -> Callable[[str], list[int]]:
    """fairseq's BART/RoBERTa hub ``encode`` (``bpe`` = fairseq's GPT-2 encoder)."""
    def encode(sentence: str) -> list[int]:
        line = "<s> " + " ".join(map(str, bpe.encode(sentence))) + " </s>"
        return dictionary.encode_line(line, append_eos=False, add_if_not_exist=False).long().tolist()
    return encode


def wordpiece_fairseq_ids(dictionary: Any, backend: Any) -> Callable[[str], list[int]]:
    """A converted BERT: WordPiece pieces (this project's WordPieceBackend) between <s> and </s>."""
    def encode(sentence: str) -> list[int]:
        return [dictionary.bos(), *backend.text(sentence), dictionary.eos()]
    return encode


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def compare(*, family: str, fairseq_model: torch.nn.Module, encode: Callable[[str], list[int]], hf_model: Any,
            tokenizer: Any, sentences: list[str], generate_tokens: int = GENERATE_TOKENS) -> Comparison:
    """Run both sides on every sentence (one at a time, fp32, eval mode) and collect the differences."""
    fairseq_model, hf_model = fairseq_model.float().eval(), hf_model.float().eval()
    result = Comparison(sentences=len(sentences))
    positions = fairseq_model.encoder.max_positions()
    if family == "bart":  # room for the decoder start and the forced </s>
        generate_tokens = min(generate_tokens, fairseq_model.decoder.max_positions() - 2)
    for sentence in sentences:
        ours, theirs = encode(sentence), tokenizer(sentence)["input_ids"]
        if ours != theirs:
            result.token_mismatches.append(f"{sentence!r}: fairseq {ours} vs transformers {theirs}")
            continue
        if len(ours) > positions:
            result.too_long.append(sentence)
            continue
        ids = torch.tensor([ours])
        with torch.no_grad():
            if family == "bart":
                _compare_bart(fairseq_model, hf_model, ids, result)
            else:
                logits, extra = fairseq_model(ids, return_all_hiddens=True)
                hidden = extra["inner_states"][-1].transpose(0, 1)
                out = hf_model(input_ids=ids, output_hidden_states=True)
                result.max_abs_hidden = max(result.max_abs_hidden, _max_diff(hidden, out.hidden_states[-1]))
                if getattr(out, "logits", None) is not None:
                    result.max_abs_logits = max(result.max_abs_logits or 0.0, _max_diff(logits, out.logits))
                result.largest_hidden_value = max(result.largest_hidden_value, hidden.abs().max().item())
        if family == "bart":
            _compare_generation(fairseq_model, hf_model, ids, sentence, generate_tokens, result)
    return result


def _compare_bart(fairseq_model: Any, hf_model: Any, ids: torch.Tensor, result: Comparison) -> None:
    lengths = torch.tensor([ids.size(1)])
    prev = torch.cat([ids[:, -1:], ids[:, :-1]], dim=1)  # fairseq's prev_output_tokens: </s> + target[:-1]
    encoder_out = fairseq_model.encoder(ids, src_lengths=lengths)["encoder_out"][0].transpose(0, 1)
    logits, extra = fairseq_model(ids, lengths, prev, return_all_hiddens=True)
    decoder_out = extra["inner_states"][-1].transpose(0, 1)
    out = hf_model(input_ids=ids, decoder_input_ids=prev, output_hidden_states=True)
    result.max_abs_encoder = max(result.max_abs_encoder or 0.0, _max_diff(encoder_out, out.encoder_last_hidden_state))
    result.max_abs_hidden = max(result.max_abs_hidden, _max_diff(decoder_out, out.decoder_hidden_states[-1]))
    result.max_abs_logits = max(result.max_abs_logits or 0.0, _max_diff(logits, out.logits))
    result.largest_hidden_value = max(result.largest_hidden_value, encoder_out.abs().max().item(),
                                      decoder_out.abs().max().item())


def _eos_at_limit(eos: int, max_length: int) -> Any:
    """A transformers logits processor: at the last position only ``eos``, with its own score."""
    from transformers import LogitsProcessor

    class EosAtLimit(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if input_ids.size(-1) == max_length - 1:
                eos_scores = scores[:, eos].clone()
                scores = torch.full_like(scores, -float("inf"))
                scores[:, eos] = eos_scores
            return scores

    return EosAtLimit()


def _compare_generation(fairseq_model: Any, hf_model: Any, ids: torch.Tensor, sentence: str, max_tokens: int,
                        result: Comparison) -> None:
    from fairseq.sequence_generator import SequenceGenerator

    dictionary = fairseq_model.decoder.dictionary
    for beam, attr in ((1, "greedy_identical"), (4, "beam4_identical")):
        generator = SequenceGenerator([fairseq_model], dictionary, beam_size=beam, max_len_b=max_tokens, min_len=1)
        with torch.no_grad():
            hypo = generator.generate([fairseq_model], {"net_input": {
                "src_tokens": ids, "src_lengths": torch.tensor([ids.size(1)])}})[0][0]["tokens"].tolist()
            theirs = hf_model.generate(
                input_ids=ids, num_beams=beam, do_sample=False, max_length=max_tokens + 2, min_length=2,
                early_stopping=True, length_penalty=1.0, no_repeat_ngram_size=0, suppress_tokens=[dictionary.pad()],
                decoder_start_token_id=dictionary.eos(), forced_eos_token_id=None, forced_bos_token_id=None,
                logits_processor=[_eos_at_limit(dictionary.eos(), max_tokens + 2)], num_return_sequences=1)[0].tolist()[1:]
        while theirs and theirs[-1] == dictionary.pad():
            theirs.pop()
        same = hypo == theirs
        fairseq_model.set_beam_size(1)  # the generator leaves its beam size in the attention modules
        setattr(result, attr, (getattr(result, attr) or 0) + same)
        if not same:
            result.generation_mismatches.append(f"beam {beam}, {sentence!r}: fairseq {hypo} vs transformers {theirs}")
