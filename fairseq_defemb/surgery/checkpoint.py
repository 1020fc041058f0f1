"""Where the token embedding matrix lives in fairseq BART and RoBERTa checkpoints, and how a
copy with a new one is written.

Weight tying means several state-dict entries hold the same matrix; surgery must
update all of them and analysis may read any one.
"""
import os
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

# Every known key for the (tied) token embeddings, per architecture family. Old
# RoBERTa checkpoints (the released roberta.base among them) prefix the encoder with
# "decoder."; fairseq renames it on load, and we accept both.
TIED_EMBEDDING_KEYS = {
    "bart": ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"),
    "roberta": (
        "encoder.sentence_encoder.embed_tokens.weight",
        "encoder.lm_head.weight",
        "decoder.sentence_encoder.embed_tokens.weight",
        "decoder.lm_head.weight",
    ),
}


def torch_load(path: Path) -> Any:
    """torch.load on CPU, memory-mapped when the file allows; an unreadable file is a ValueError naming it."""
    try:
        try:
            return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        except RuntimeError:  # legacy (non-zip) serialization cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip archives, empty files, pickle errors: many types
        raise ValueError(f"{path}: cannot be read as a torch checkpoint ({type(err).__name__}: {str(err)[:200]}); "
                         "it is truncated or not a checkpoint: pass the model.pt of a fairseq BART/RoBERTa") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a fairseq checkpoint (a model.pt or its directory) memory-mapped on CPU.

    Memory-mapping reads only what is touched: rows surgery changes are copied on write,
    the rest of a 1.6 GB BART-large file never enters memory.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (a fairseq model.pt)")
    state = torch_load(path)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a fairseq checkpoint (no 'model' state dict)")
    return state


def embedding_keys(model_state: dict[str, torch.Tensor]) -> list[str]:
    """The state-dict keys holding the token embedding matrix (all tied copies)."""
    for keys in TIED_EMBEDDING_KEYS.values():
        present = [k for k in keys if k in model_state]
        if present:
            return present
    raise KeyError(
        "no token embedding found; expected one of "
        + ", ".join(k for keys in TIED_EMBEDDING_KEYS.values() for k in keys)
    )


def read_embedding_matrix(checkpoint_path: str | Path) -> torch.Tensor:
    """The (|V|, d) input token embedding matrix of a fairseq BART/RoBERTa checkpoint."""
    state = load_checkpoint(checkpoint_path)["model"]
    try:
        key = embedding_keys(state)[0]
    except KeyError as err:
        raise KeyError(f"{checkpoint_path}: {err.args[0]}") from None
    return state[key].float()


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.dtype == b.dtype
            and a.storage_offset() == b.storage_offset() and a.shape == b.shape and a.stride() == b.stride())


def tied_embedding(model_state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> tuple[list[str], torch.Tensor]:
    """All keys of the tied token embedding and the matrix, checking the copies are equal.

    Raises ValueError naming ``source`` if there is no embedding or a copy differs
    (an untied checkpoint: surgery would have to choose which copy to trust).
    """
    try:
        keys = embedding_keys(model_state)
    except KeyError as err:
        raise ValueError(f"{source}: {err.args[0]}") from None
    matrix = model_state[keys[0]]
    for key in keys[1:]:
        other = model_state[key]
        if _same_memory(other, matrix):  # tied parameters are saved once and load as one storage
            continue
        if other.shape != matrix.shape or other.dtype != matrix.dtype or not torch.equal(other, matrix):
            raise ValueError(f"{source}: {key} differs from {keys[0]}; these copies must be tied (equal) for surgery")
    return keys, matrix


def with_rows(matrix: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A new matrix (``matrix``'s dtype): ``matrix`` with rows ``ids`` set to ``rows``. ``matrix`` itself,
    memory-mapped from the input checkpoint, is left untouched."""
    if len(ids) == matrix.size(0) and torch.equal(ids, torch.arange(matrix.size(0))):
        return rows.to(matrix.dtype)
    return matrix.clone().index_copy_(0, ids, rows.to(matrix.dtype))


def _embedding_records(source: Path, keys: list[str], matrix: torch.Tensor) -> dict[int, int] | None:
    """File offset of each distinct zip record holding a tied copy -> byte offset of the matrix in
    that record, or None unless every copy is a plain contiguous tensor of ``matrix``'s shape and
    dtype in a stored (uncompressed) record of a native-byte-order zip checkpoint."""
    if not zipfile.is_zipfile(source):  # legacy serialization
        return None
    meta = torch.load(source, map_location="meta", weights_only=False)["model"]
    records = {}
    for key in keys:
        tensor = meta[key]
        offset = getattr(tensor.untyped_storage(), "_checkpoint_offset", None)
        if offset is None or not tensor.is_contiguous() or tensor.dtype != matrix.dtype or tensor.shape != matrix.shape:
            return None
        records[offset] = tensor.storage_offset() * tensor.element_size()
    with zipfile.ZipFile(source) as archive:
        order = [info for info in archive.infolist() if info.filename.endswith("/byteorder")]
        if order and archive.read(order[0]).decode() != sys.byteorder:
            return None
    return records


def _patch_record(out, info: zipfile.ZipInfo, data_offset: int, start: int, payload: memoryview, central: int) -> None:
    """Overwrite ``payload`` at byte ``start`` of a stored zip record of the open file ``out`` and
    rewrite the record's CRC-32 where zip readers check it (data descriptor or local header, and
    the central directory entry at file offset ``central``)."""
    out.seek(data_offset)
    before = out.read(start)
    out.seek(data_offset + start + len(payload))
    after = out.read(info.file_size - start - len(payload))
    out.seek(data_offset + start)
    out.write(payload)
    crc = struct.pack("<I", zlib.crc32(after, zlib.crc32(payload, zlib.crc32(before))))
    if info.flag_bits & 0x08:  # data descriptor after the data, optionally signed
        out.seek(data_offset + info.compress_size)
        signed = out.read(4) == b"PK\x07\x08"
        out.seek(data_offset + info.compress_size + (4 if signed else 0))
    else:
        out.seek(info.header_offset + 14)
    out.write(crc)
    out.seek(central + 16)
    out.write(crc)


def _copy_file(source: Path, dest: Path) -> None:
    """Copy inside the kernel: copy_file_range (page cache to page cache; faster here than the
    sendfile of shutil.copyfile), else shutil.copyfile."""
    with source.open("rb") as src, dest.open("wb") as out:
        size, done = os.fstat(src.fileno()).st_size, 0
        try:
            while done < size:
                copied = os.copy_file_range(src.fileno(), out.fileno(), size - done)
                if copied == 0:
                    break
                done += copied
        except (AttributeError, OSError):  # not Linux, or a file system that refuses it
            done = -1
    if done != size:
        shutil.copyfile(source, dest)


def copy_with_embedding(source: str | Path, dest: str | Path, keys: list[str], matrix: torch.Tensor) -> bool:
    """Write a copy of checkpoint ``source`` to ``dest`` with every tied copy of the token embedding
    set to ``matrix``, every other byte of the file unchanged.

    The file is copied by the kernel and only the embedding's zip records (its bytes, and the
    record's CRC-32) are rewritten: torch.save would re-serialize and re-checksum every unchanged
    tensor, most of its time on BART-large. Returns False, writing nothing, for a layout this does not
    handle (a legacy or big-endian checkpoint, a non-contiguous copy, a zip not laid out as torch
    writes it): the caller then uses torch.save.
    """
    source, dest = Path(source), Path(dest)
    records = _embedding_records(source, keys, matrix)
    if records is None:
        return False
    payload = memoryview(matrix.contiguous().view(torch.uint8).numpy()).cast("B")
    with zipfile.ZipFile(source) as archive, source.open("rb") as src:
        found = {}
        for info in archive.infolist():
            src.seek(info.header_offset)
            header = src.read(30)
            if len(header) < 30 or header[:4] != b"PK\x03\x04" or info.compress_type != zipfile.ZIP_STORED:
                continue
            data_offset = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
            if data_offset in records and records[data_offset] + len(payload) <= info.file_size:
                found[info.filename.encode()] = (info, data_offset)
        if len(found) != len(records):
            return False
        central = {}
        src.seek(archive.start_dir)
        while (entry := src.read(46))[:4] == b"PK\x01\x02":
            lengths = [int.from_bytes(entry[i:i + 2], "little") for i in (28, 30, 32)]
            name = src.read(lengths[0])
            if name in found:
                central[name] = src.tell() - lengths[0] - 46
            src.seek(lengths[1] + lengths[2], 1)
        if central.keys() != found.keys():
            return False
    _copy_file(source, dest)
    with dest.open("r+b") as out:
        for name, (info, data_offset) in found.items():
            _patch_record(out, info, data_offset, records[data_offset], payload, central[name])
    return True


def write_checkpoint(source: str | Path, dest: str | Path, state: dict[str, Any], keys: list[str],
                     matrix: torch.Tensor) -> None:
    """``state`` (loaded from ``source``) with the tied embedding copies ``keys`` set to ``matrix``,
    saved to ``dest``: a patched copy of ``source`` when possible, else torch.save."""
    if not copy_with_embedding(source, dest, keys, matrix):
        torch.save({**state, "model": {**state["model"], **{key: matrix for key in keys}}}, dest)
