"""defemb's dict.txt reader against fairseq's own Dictionary.load, on awkward files."""
import itertools
import json
import re
import tempfile
from pathlib import Path

import pytest
from fairseq.data import Dictionary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from fairseq_defemb.data.vocabulary import MASK_SYMBOL, DictionaryFormatError, Vocabulary, load_model_dictionary

# Characters that matter to the format: separators, every kind of line break and whitespace that
# text mode, str.rstrip or str.splitlines treat differently, specials, the overwrite flag's parts,
# digits that int() accepts in other scripts.
AWKWARD = [" ", "  ", "\t", "\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "#",
           "#fairseq:overwrite", "<s>", "</s>", "<unk>", "<pad>", MASK_SYMBOL, "madeupword0000", "a", "b", "\u0120the",
           "\ufeff", "0", "7", "-3", "+2", "1_000", "\u0663", "x", "", "\x00", "\u00e9", "\U0001f600"]


def fairseq_model_dictionary(path: Path) -> Dictionary:
    dictionary = Dictionary.load(str(path))
    dictionary.add_symbol(MASK_SYMBOL)
    return dictionary


def same_outcome(path: Path) -> None:
    """Both readers accept the file with identical results, or both refuse it."""
    try:
        expected = fairseq_model_dictionary(path)
    except Exception:  # fairseq: ValueError, RuntimeError (duplicates), Exception (encoding)
        with pytest.raises(DictionaryFormatError, match=re.escape(str(path)) + ":[0-9]+: "):
            load_model_dictionary(path)
        return
    ours = load_model_dictionary(path)
    assert (ours.symbols, ours.count, ours.indices, ours.nspecial) == (
        expected.symbols, expected.count, expected.indices, expected.nspecial)
    assert (ours.bos(), ours.pad(), ours.eos(), ours.unk()) == (expected.bos(), expected.pad(), expected.eos(), expected.unk())
    assert ours == expected and len(ours) == len(expected)
    for probe in [*expected.symbols, "never-seen", ""]:
        assert ours.index(probe) == expected.index(probe) and (probe in ours) == (probe in expected)
    for i in (0, 3, len(expected) - 1, len(expected), len(expected) + 5, -1):
        assert ours[i] == expected[i]


_TMP = tempfile.TemporaryDirectory(prefix="defemb-test-vocabulary-")  # removed when the test process ends
_NAMES = itertools.count()


def write(data: bytes) -> Path:
    path = Path(_TMP.name) / f"dict{next(_NAMES)}.txt"
    path.write_bytes(data)
    return path


lines = st.lists(st.sampled_from(AWKWARD), min_size=0, max_size=6).map("".join)
files = st.lists(st.tuples(lines, st.sampled_from(["\n", "\r\n", "\r", ""])), max_size=8).map(
    lambda parts: "".join(line + end for line, end in parts).encode("utf-8"))
well_formed = st.lists(st.tuples(st.sampled_from(AWKWARD[17:]), st.integers(-5, 10**12), st.booleans(),
                                 st.sampled_from(["\n", "\r\n", "\r"])), max_size=12).map(
    lambda rows: "".join(f"{s} {c}{' #fairseq:overwrite' if o else ''}{end}" for s, c, o, end in rows).encode("utf-8"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files)
def test_any_text_reads_as_fairseq_reads_it(data):
    same_outcome(write(data))


@settings(max_examples=200, deadline=None)
@given(well_formed)
def test_symbol_count_lines_with_duplicates_and_overwrite_flags(data):
    same_outcome(write(data))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_including_invalid_utf8(data):
    same_outcome(write(data))


@pytest.mark.parametrize("text", [
    "",
    "a 1\nb 2\n",
    "a 1\nb 2",  # no final newline
    "a 1\r\nb 2\rc 3\n",  # Windows and old-Mac line ends: text mode reads three lines
    "a\x0bb 1\nc\u2028d 2\n",  # not line breaks for fairseq: part of the symbols
    "two words 5\n",  # the symbol may contain spaces: split at the last one
    "a 1 #fairseq:overwrite\n",  # the flag on a new symbol
    "a 1\na 2 #fairseq:overwrite\n",  # a repeated symbol gets a new id, the old row stays
    "<s> 9 #fairseq:overwrite\n",  # even a special
    "<mask> 4\n",  # <mask> already listed: appending it adds no row
    "a 1 \n",  # trailing whitespace stripped before the split
    "a \u0663\n",  # int() reads Arabic-Indic digits
    "a 1_000\n",
    "\ufeffa 1\n",  # a byte-order mark stays part of the first symbol
])
def test_documented_awkward_cases(text):
    same_outcome(write(text.encode("utf-8")))


@pytest.mark.parametrize("text, line", [
    ("a 1\nno-count-here\n", 2), ("a 1\n\nb 2\n", 2), ("a 1\na 2\n", 2), ("a x\n", 1), ("a 1\n<unk> 3\n", 2),
    ("#fairseq:overwrite 1 #fairseq:overwrite\na #fairseq:overwrite\n", 2),
])
def test_refused_files_name_the_line(text, line):
    path = write(text.encode("utf-8"))
    same_outcome(path)
    with pytest.raises(DictionaryFormatError, match=re.escape(f"{path}:{line}: ")):
        Vocabulary.load(path)


def test_invalid_utf8_names_its_line():
    path = write(b"a 1\nb 2\n\xff 3\n")
    with pytest.raises(DictionaryFormatError, match=re.escape(f"{path}:3: not UTF-8")):
        load_model_dictionary(path)


def test_real_gpt2_dictionary():
    encoder = REPO / ".cache" / "gpt2" / "encoder.json"
    if not encoder.is_file():
        pytest.skip("make install fetches .cache/gpt2/encoder.json")
    n = len(json.loads(encoder.read_text()))
    same_outcome(write("".join(f"{i} {n - i}\n" for i in range(n)).encode()))
