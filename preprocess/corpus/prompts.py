"""The prompt of one (word, sense), after the paper's Figure 7, kept short for CPU budgets.

Text view (GPT-2 BPE; ``<s>``/``</s>`` are the dictionary's bos/eos)::

    <s> Sediment, "Sediment", sediment, "sediment" (n.; capitalized): The matter which subsides ...</s>

The headword's lexical variants (original, lower-case, capitalized; each in its
word-initial form and its attached form) come first, deduplicated by token ids, each
one span. A word-initial variant (GPT-2 " word", WordPiece's bare first piece,
sentencepiece's "\u2581word") follows the comma as a word does in a sentence; an attached
variant (GPT-2 "word" without the leading space, WordPiece's "##word") sits in quotes,
where GPT-2 BPE writes it without the space too. Then part of speech and the case of
the original headword ("lower case", "capitalized", "all caps", "mixed case"), then the
definition. The prompt is tokenized piece by piece (template pieces, variants,
definition), so each span covers exactly its variant's subwords by construction.
An entry that names a vocabulary symbol (``Entry.token_id``, from a manual file) has that
one id as its only variant. ``max_tokens`` cuts the definition, never a span.
"""
from dataclasses import dataclass

from preprocess.corpus.entries import Entry, SkipLog
from preprocess.corpus.tokenizers import SubwordBackend


@dataclass
class Prompt:
    ids: list[int]
    spans: list[tuple[int, int]]
    source: str
    # where the part of speech/case header and the definition begin: a held-out evaluation
    # rebuilds the prompt without the other variants and averages the definition's own tokens
    header_start: int
    definition_start: int
    generic: bool = False


def case_of(word: str) -> str:
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return "no letters"
    if not any(c.islower() or c.isupper() for c in letters):
        return "no case"  # scripts without case: CJK, Arabic, Hebrew...
    if all(c.islower() for c in letters):
        return "lower case"
    if all(c.isupper() for c in letters):
        return "all caps" if len(letters) > 1 else "capitalized"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "capitalized"
    return "mixed case"


MULTI_WORD = "multi-word headword (not a target)"


def build_prompt(entry: Entry, backend: SubwordBackend, max_tokens: int, skips: SkipLog) -> Prompt | None:
    if entry.token_id is not None:
        # a vocabulary symbol: exactly that id is the target, the word is not tokenized again
        return prompt_from_variants(entry, [([entry.token_id], backend.word_initial(entry.token_id))], backend,
                                    max_tokens, skips)
    if len(entry.word.split()) > 1:
        # "kick the bucket": its spans would make " the" and " bucket" targets of a phrase's
        # definition. Skipped, and counted in coverage.json's "skipped".
        skips.skip(MULTI_WORD, entry.word)
        return None
    variants, dropped = backend.variants(entry.word, entry.cased, entry.position)
    for _ in range(dropped):
        skips.skip("variant with <unk> dropped", entry.word)
    if not variants:
        skips.skip("no variant in the vocabulary", entry.word)
        return None
    return prompt_from_variants(entry, variants, backend, max_tokens, skips)


def prompt_from_variants(entry: Entry, variants: list[tuple[list[int], bool]], backend: SubwordBackend,
                         max_tokens: int, skips: SkipLog) -> Prompt | None:
    """The template around given ``variants`` ((ids, word_initial) spans): what ``build_prompt``
    writes, and what ``defemb-add-tokens`` writes for a new word, whose variants are ids the
    tokenizer does not produce yet."""
    d = backend.dictionary
    comma, open_quote, close_quote = backend.glue(","), backend.text('"'), backend.glue('"')
    ids, spans = [d.bos()], []
    for i, (variant, word_initial) in enumerate(variants):
        if i:
            ids += comma
        if not word_initial:
            ids += open_quote
        spans.append((len(ids), len(ids) + len(variant)))
        ids += variant
        if not word_initial:
            ids += close_quote
    case = case_of(entry.word)
    header_start = len(ids)
    ids += backend.text(f"({entry.pos}; {case}):" if entry.pos else f"({case}):")
    room = max_tokens - len(ids) - 1
    if room < 1:
        skips.skip("prompt too long for --max-prompt-tokens", entry.word)
        return None
    definition = backend.text(entry.definition)
    if not definition:
        skips.skip("empty definition after tokenization", entry.word)
        return None
    if len(definition) > room:
        skips.skip("definition truncated", entry.word)
        definition = definition[:room]
    return Prompt(ids + definition + [d.eos()], spans, entry.source, header_start, len(ids), entry.generic)
