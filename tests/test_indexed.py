"""defemb's mmap indexed dataset reader and writer against fairseq's own."""
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq.data import indexed_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from fairseq_defemb.data.indexed import (IndexedFormatError, MMapIndexed, MMapIndexedWriter, best_fitting_int_dtype,
                                 is_mmap_dataset, read_items)

_TMP = tempfile.TemporaryDirectory(prefix="defemb-test-indexed-")  # removed when the test process ends
_NAMES = itertools.count()
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.float64]


def prefix() -> str:
    return str(Path(_TMP.name) / f"data{next(_NAMES)}")


def fairseq_write(path: str, items: list[np.ndarray], dtype) -> None:
    builder = indexed_dataset.MMapIndexedDatasetBuilder(path + ".bin", dtype=dtype)
    for item in items:
        builder.add_item(torch.from_numpy(np.asarray(item)))
    builder.finalize(path + ".idx")


def datasets():
    """(dtype, items): items of any length (empty ones too) with values the dtype holds."""
    def items_for(dtype):
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        values = (st.integers(int(info.min), int(info.max)) if info else
                  st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
        return st.lists(st.lists(values, max_size=20), max_size=12).map(
            lambda rows: (dtype, [np.asarray(r, dtype=dtype).reshape(-1) for r in rows]))
    return st.sampled_from(DTYPES).flatmap(items_for)


@settings(max_examples=150, deadline=None)
@given(datasets())
def test_writer_writes_fairseqs_bytes_and_reader_reads_fairseqs_items(case):
    dtype, items = case
    ours, theirs = prefix(), prefix()
    writer = MMapIndexedWriter(ours + ".bin", dtype=dtype)
    for item in items:
        writer.add_item(item)
    writer.finalize(ours + ".idx")
    fairseq_write(theirs, items, dtype)
    for suffix in (".bin", ".idx"):
        assert Path(ours + suffix).read_bytes() == Path(theirs + suffix).read_bytes()
    data = MMapIndexed(theirs)
    assert is_mmap_dataset(theirs) and len(data) == len(items) and data.dtype == np.dtype(dtype)
    assert data.sizes.tolist() == [len(i) for i in items]
    flat = np.concatenate(items) if items else np.zeros(0, dtype)
    assert np.array_equal(data.tokens(), flat) and data.tokens().dtype == np.dtype(dtype)
    if not flat.size:
        return  # fairseq cannot map an empty .bin; the comparison of bytes above covers it
    reference = indexed_dataset.MMapIndexedDataset(theirs)
    for i in range(len(items)):
        # fairseq returns int64 for every stored dtype but int64 itself (kept as is) and float64 (cast)
        assert np.array_equal(data[i], reference[i].numpy()) and data[i].dtype == np.int64
    assert [x.tolist() for x in read_items(theirs)] == [reference[i].tolist() for i in range(len(items))]


def test_best_fitting_dtype_is_fairseqs_at_the_boundaries():
    for n in (None, 0, 65499, 65500, 65501, 4294967294, 4294967295, 2**40):
        assert best_fitting_int_dtype(n) == indexed_dataset.best_fitting_int_dtype(n), n


def test_items_not_back_to_back_are_still_read_in_order():
    path = prefix()
    fairseq_write(path, [np.arange(3), np.arange(10, 15)], np.uint16)
    idx = Path(path + ".idx")
    raw = bytearray(idx.read_bytes())
    # swap the two items' offsets (and sizes): item 0 is now the one stored second
    header = 26
    sizes = np.frombuffer(bytes(raw[header:header + 8]), dtype=np.int32)[::-1].copy()
    pointers = np.array([6, 0], dtype=np.int64)
    raw[header:header + 8], raw[header + 8:header + 24] = sizes.tobytes(), pointers.tobytes()
    idx.write_bytes(bytes(raw))
    data = MMapIndexed(path)
    assert data.tokens().tolist() == [10, 11, 12, 13, 14, 0, 1, 2]
    assert data[0].tolist() == indexed_dataset.MMapIndexedDataset(path)[0].tolist() == [10, 11, 12, 13, 14]


def test_legacy_format_falls_back_to_fairseq():
    path = prefix()
    builder = indexed_dataset.IndexedDatasetBuilder(path + ".bin")
    for item in ([5, 6, 7], [8]):
        builder.add_item(torch.tensor(item, dtype=torch.int32))
    builder.finalize(path + ".idx")
    assert not is_mmap_dataset(path)
    assert [x.tolist() for x in read_items(path)] == [[5, 6, 7], [8]]


def test_bad_inputs_are_errors_naming_the_file():
    with pytest.raises(FileNotFoundError, match="missing.bin/.idx: not found"):
        read_items(prefix() + "missing")
    path = prefix()
    fairseq_write(path, [np.arange(100)], np.uint16)
    Path(path + ".bin").write_bytes(Path(path + ".bin").read_bytes()[:50])
    with pytest.raises(IndexedFormatError, match=r"\.bin: missing or shorter"):
        MMapIndexed(path)
    Path(path + ".idx").write_bytes(b"MMIDIDX\x00\x00" + b"\x02" + bytes(16))
    with pytest.raises(IndexedFormatError, match="version"):
        MMapIndexed(path)
    writer = MMapIndexedWriter(prefix() + ".bin", dtype=np.uint16)
    with pytest.raises(ValueError, match="do not fit uint16"):
        writer.add_item(np.array([1, 70000]))  # fairseq's builder would store 4464
