"""The prompt of one (word, sense), after the paper's Figure 7, kept short for CPU budgets.

    <s> {v1} , {v2} , ... ( {pos} ; {case} ) : {definition} </s>

``v1, v2, ...`` are the headword's lexical variants (original, lower-case, capitalized,
each with and without the leading space), deduplicated by their token ids; each is one
span. ``case`` says how the headword is written ("lower case", "capitalized", "all caps",
"mixed case"). The definition is cut, never a span, to fit ``max_tokens``.
"""
from dataclasses import dataclass

from preprocess.entries import Entry, SkipLog
from preprocess.tokenizers import SubwordBackend


@dataclass
class Prompt:
    ids: list[int]
    spans: list[tuple[int, int]]
    source: str


def case_of(word: str) -> str:
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return "no letters"
    if all(c.islower() for c in letters):
        return "lower case"
    if all(c.isupper() for c in letters):
        return "all caps" if len(letters) > 1 else "capitalized"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "capitalized"
    return "mixed case"


def build_prompt(entry: Entry, backend: SubwordBackend, max_tokens: int, skips: SkipLog) -> Prompt | None:
    variants, dropped = backend.variants(entry.word)
    for _ in range(dropped):
        skips.skip("variant with <unk> dropped", entry.word)
    if not variants:
        skips.skip("no variant in the vocabulary", entry.word)
        return None
    d = backend.dictionary
    ids, spans = [d.bos()], []
    separator = backend.text(",")
    for i, variant in enumerate(variants):
        if i:
            ids += separator
        spans.append((len(ids), len(ids) + len(variant)))
        ids += variant
    info = f"( {entry.pos} ; {case_of(entry.word)} ) :" if entry.pos else f"( {case_of(entry.word)} ) :"
    ids += backend.text(info)
    room = max_tokens - len(ids) - 1
    if room < 1:
        skips.skip("prompt too long for --max-prompt-tokens", entry.word)
        return None
    definition = backend.text(entry.definition)
    if len(definition) > room:
        skips.skip("definition truncated", entry.word)
        definition = definition[:room]
    return Prompt(ids + definition + [d.eos()], spans, entry.source)
