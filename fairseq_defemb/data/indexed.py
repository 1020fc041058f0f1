"""fairseq's ``mmap`` indexed dataset format (``PREFIX.bin`` + ``PREFIX.idx``), read and written with numpy.

What ``fairseq-preprocess`` writes by default and what the definition corpus uses. The
``.idx`` is ``MMIDIDX\\0\\0``, version 1 (<Q), a dtype code (<B), the item count N (<Q), N
int32 sizes and N int64 byte offsets into the ``.bin``, which holds the items back to back.
Reading it here spares the commands that only count or copy ids (surgery, rare-subset, the
corpus builder) the import of fairseq; tests/test_indexed.py checks both directions against
fairseq's own ``MMapIndexedDataset`` and builder. Other formats (fairseq's legacy ``cached``
and ``raw``) go through fairseq: :func:`read_items` falls back to it.
"""
import struct
from pathlib import Path

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
# fairseq's dtype codes (indexed_dataset._code_to_dtype); 7 (np.double) is a second name for 6.
DTYPE_CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.double,
               8: np.uint16, 9: np.uint32, 10: np.uint64}
_HEADER = len(MAGIC) + 8 + 1 + 8


class IndexedFormatError(ValueError):
    """A .bin/.idx pair that is not a well-formed mmap indexed dataset."""


def best_fitting_int_dtype(max_int_to_represent: int | None) -> type:
    """The dtype fairseq picks for ids below ``max_int_to_represent`` (its ``best_fitting_int_dtype``)."""
    if max_int_to_represent is None:
        return np.uint32
    if max_int_to_represent < 65500:
        return np.uint16
    if max_int_to_represent < 4294967295:
        return np.uint32
    return np.int64


def is_mmap_dataset(prefix: str | Path) -> bool:
    """``PREFIX.bin`` exists and ``PREFIX.idx`` starts with the mmap magic."""
    idx, bin_ = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    if not (idx.is_file() and bin_.is_file()):
        return False
    with idx.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


class MMapIndexed:
    """Read-only view of an mmap indexed dataset: ``len``, ``sizes``, ``[i]`` (an int64 array, as
    fairseq returns) and ``tokens()``, every item back to back."""

    def __init__(self, prefix: str | Path):
        self.prefix = str(prefix)
        idx = Path(f"{prefix}.idx")
        header = b""
        if idx.is_file():
            with idx.open("rb") as f:
                header = f.read(_HEADER)
        if len(header) < _HEADER or header[:len(MAGIC)] != MAGIC:
            raise IndexedFormatError(f"{idx}: not a fairseq mmap index (no {MAGIC!r} header)")
        version, code, count = struct.unpack("<QBQ", header[len(MAGIC):])
        if version != VERSION or code not in DTYPE_CODES:
            raise IndexedFormatError(f"{idx}: mmap index version {version}, dtype code {code}; fairseq 0.12 writes "
                                     f"version {VERSION} with codes {sorted(DTYPE_CODES)}")
        self.dtype = np.dtype(DTYPE_CODES[code])
        if idx.stat().st_size < _HEADER + count * 12:
            raise IndexedFormatError(f"{idx}: {count} items announced, the file is too short for them; re-binarize")
        index = np.memmap(idx, dtype=np.uint8, mode="r")
        self.sizes = np.frombuffer(index, dtype=np.int32, count=count, offset=_HEADER)
        self.pointers = np.frombuffer(index, dtype=np.int64, count=count, offset=_HEADER + 4 * count)
        data = Path(f"{prefix}.bin")
        end = int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize if count else 0
        if not data.is_file() or data.stat().st_size < end:
            raise IndexedFormatError(f"{data}: missing or shorter than its index says ({end} bytes); re-binarize")
        # numpy cannot map an empty file; an empty dataset needs no data.
        self._data = np.memmap(data, dtype=np.uint8, mode="r") if data.stat().st_size else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.prefix}: item {i} of {len(self)}")
        return np.frombuffer(self._data, dtype=self.dtype, count=int(self.sizes[i]),
                             offset=int(self.pointers[i])).astype(np.int64)

    def tokens(self) -> np.ndarray:
        """All items concatenated, in the stored dtype: a view of the .bin when the items lie back to
        back from its start (as every fairseq builder writes them), else a copy."""
        expected = np.concatenate([[0], np.cumsum(self.sizes[:-1], dtype=np.int64)]) * self.dtype.itemsize
        total = int(self.sizes.sum(dtype=np.int64))
        if len(self) == 0 or np.array_equal(self.pointers, expected):
            return np.frombuffer(self._data, dtype=self.dtype, count=total) if total else np.zeros(0, self.dtype)
        return np.concatenate([self[i].astype(self.dtype) for i in range(len(self))])


def read_items(prefix: str | Path) -> list[np.ndarray]:
    """Every item of a binarized split as int64 arrays: mmap datasets here, any other format
    fairseq reads (legacy ``cached``/``lazy``, ``raw``) through fairseq."""
    if is_mmap_dataset(prefix):
        dataset = MMapIndexed(prefix)
        return [dataset[i] for i in range(len(dataset))]
    if not (Path(f"{prefix}.idx").is_file() or Path(prefix).is_file()):  # fairseq's raw format: PREFIX itself
        raise FileNotFoundError(f"{prefix}.bin/.idx: not found")
    from fairseq.data import data_utils, indexed_dataset

    impl = indexed_dataset.infer_dataset_impl(str(prefix))
    # fairseq infers "cached" for the legacy format, which needs a prefetch; "lazy" reads it as is.
    dataset = data_utils.load_indexed_dataset(str(prefix), None, dataset_impl="lazy" if impl == "cached" else impl)
    if dataset is None:
        raise FileNotFoundError(f"{prefix}.bin/.idx: not a fairseq indexed dataset")
    return [dataset[i].numpy().astype(np.int64) for i in range(len(dataset))]


class MMapIndexedWriter:
    """Writes ``PREFIX.bin`` item by item and ``PREFIX.idx`` on :meth:`finalize`, byte for byte what
    fairseq's ``MMapIndexedDatasetBuilder`` writes; values that do not fit ``dtype`` are an error
    (fairseq's builder would wrap them around)."""

    def __init__(self, bin_path: str | Path, dtype: type = np.int64):
        self.dtype = np.dtype(dtype)
        self._code = next(k for k, v in DTYPE_CODES.items() if np.dtype(v) == self.dtype)
        self._file = open(bin_path, "wb")
        self._sizes: list[int] = []

    def add_item(self, values) -> None:
        array = np.asarray(values)
        converted = array.astype(self.dtype)
        if array.size and not np.array_equal(converted, array):
            raise ValueError(f"{self._file.name}: values {array.min()}..{array.max()} do not fit {self.dtype}")
        self._file.write(converted.tobytes(order="C"))
        self._sizes.append(converted.size)

    def finalize(self, idx_path: str | Path) -> None:
        self._file.close()
        sizes = np.asarray(self._sizes, dtype=np.int32)
        pointers = np.concatenate([[0], np.cumsum(sizes[:-1], dtype=np.int64)]).astype(np.int64) * self.dtype.itemsize
        with open(idx_path, "wb") as f:
            f.write(MAGIC + struct.pack("<QBQ", VERSION, self._code, len(sizes)))
            f.write(sizes.tobytes(order="C"))
            f.write(pointers[:len(sizes)].tobytes(order="C"))
