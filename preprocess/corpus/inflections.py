"""Form-of definitions of inflected forms, Wiktionary-style, from ``lemminflect``'s tables.

    things (noun; lower case): plural of thing: Whatever exists, or is conceived to exist ...
    says (verb; lower case): third-person singular simple present of say: To utter or express ...
    said (verb; lower case): simple past and past participle of say: To utter or express ...

The lemmas are the headwords the other sources of the build define (GCIDE, Wiktionary, a
manual list, the demonyms of ``names``), offered to a ``LemmaIndex`` as they stream by;
the inflections come from ``lemminflect``'s lookup table (built from the SPECIALIST
lexicon, shipped in the package), never from its rules for unknown words, except the
plural of a demonym ("Iraqis"), which the table does not hold. Each form-of definition is
followed by the lemma's own first definition for that part of speech, so it never points
to a lemma without a definition. Forms equal to their lemma add nothing and are left out.
"""
import re
from typing import Iterator

from preprocess.corpus.entries import Entry, SkipLog

# Penn Treebank tags of lemminflect -> Wiktionary's form-of wording.
FORM_OF = {
    "NNS": "plural",
    "VBZ": "third-person singular simple present",
    "VBP": "simple present",
    "VBD": "simple past",
    "VBN": "past participle",
    "VBG": "present participle",
    "JJR": "comparative",
    "JJS": "superlative",
    "RBR": "comparative",
    "RBS": "superlative",
}
POS_NAME = {"NOUN": "noun", "VERB": "verb", "ADJ": "adj.", "ADV": "adv."}
MAX_POS_CHARS = 24  # a longer part of speech is one of GCIDE's garbled records
LEMMA = re.compile(r"[a-z]+(?:-[a-z]+)*")


def upos_of(pos: str) -> list[str]:
    """Universal POS tags of a dictionary's part-of-speech label ("v. t. & i." -> VERB,
    "a. & n." -> ADJ, NOUN); plural and proper nouns, participles and pronouns get none."""
    p = pos.lower().strip()
    if not p or len(p) > MAX_POS_CHARS or "prop" in p:
        return []
    words = set(re.findall(r"[a-z]+", p))
    tags = []
    if words & {"n", "noun"} and "pl" not in words:
        tags.append("NOUN")
    if words & {"v", "verb"}:
        tags.append("VERB")
    if words & {"a", "adj", "adjective"}:
        tags.append("ADJ")
    if words & {"adv", "adverb"}:
        tags.append("ADV")
    return tags


class LemmaIndex:
    """The first definition of each (lemma, universal POS) among the entries offered."""

    def __init__(self) -> None:
        self.definitions: dict[tuple[str, str], Entry] = {}

    def offer(self, entry: Entry) -> None:
        if entry.pos == "demonym":
            tags = ["DEMONYM"]
        elif LEMMA.fullmatch(entry.word):
            tags = upos_of(entry.pos)
        else:
            return
        for tag in tags:
            self.definitions.setdefault((entry.word, tag), entry)

    def __len__(self) -> int:
        return len(self.definitions)


def form_of(tags: list[str]) -> str:
    """"simple past and past participle" for [VBD, VBN]."""
    labels = list(dict.fromkeys(FORM_OF[t] for t in tags))
    return " and ".join(labels)


def inflection_entries(index: LemmaIndex, skips: SkipLog | None = None) -> Iterator[Entry]:
    """One form-of entry per (form, lemma, part of speech), in the index's order."""
    from lemminflect import getAllInflections, getAllInflectionsOOV

    skips = skips if skips is not None else SkipLog()
    for (lemma, tag), lemma_entry in index.definitions.items():
        if tag == "DEMONYM":
            table, pos = {"NNS": getAllInflectionsOOV(lemma, "NOUN").get("NNS", ())}, "noun"
        else:
            table, pos = getAllInflections(lemma, upos=tag), POS_NAME[tag]
        if not table:
            skips.skip("lemma not in lemminflect's table", f"{lemma} ({tag.lower()})")
            continue
        if tag == "VERB" and "VBD" in table and "VBN" not in table:
            # The table (resources/infl_lu.csv.gz) leaves a regular verb's past participle
            # empty ("call,verb,called,,calling,calls"): it is the simple past.
            table = {**table, "VBN": table["VBD"]}
        by_form: dict[str, list[str]] = {}
        for penn, forms in table.items():
            if penn not in FORM_OF:
                continue
            for form in forms:
                if form != lemma and form.strip():
                    by_form.setdefault(form, []).append(penn)
        for form, tags in by_form.items():
            yield Entry(form, pos, f"{form_of(tags)} of {lemma}: {lemma_entry.definition}", "inflections")
