"""defemb-surgery: selection, writing, baselines, verification and bad input."""
import json
import shutil
import struct
import subprocess
import zipfile
import zlib

import numpy as np
import pytest
import torch
from fairseq.data import indexed_dataset

from conftest import REPO, VENV_BIN
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
import fairseq_defemb.analysis.isotropy as isotropy
from fairseq_defemb.analysis.frequency_groups import frequency_groups, groups_convention
from fairseq_defemb.analysis.isotropy import isotropy_by_group
from fairseq_defemb.surgery.postprocessing import del_direction, del_direction_centred, del_zscore
from fairseq_defemb.surgery.checkpoint import copy_with_embedding, embedding_keys, load_checkpoint as load_state
from fairseq_defemb.cli.surgery import main as cli_main
from fairseq_defemb.surgery.swap import SurgeryError, change_report, swap_embeddings, verify
from fairseq_defemb.data.vocabulary import dictionary_sha256, load_model_dictionary
from tiny_models import TINY_WORDS, write_dict


@pytest.fixture()
def inputs(tiny_dir, tmp_path):
    """Task data binarized with the tiny dictionary, and predictions for a few tokens."""
    d = load_model_dictionary(tiny_dir / "roberta" / "dict.txt")
    (tmp_path / "task").mkdir()
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(tmp_path / "task" / "train.bin"), dtype=np.uint16)
    for line in ("the cat and the dog", "quagga okapi dugong zebu emu gnu yak"):
        builder.add_item(torch.tensor([d.index(w) for w in line.split()]))
    builder.finalize(str(tmp_path / "task" / "train.idx"))
    words = ["quagga", "okapi", "zebu", "emu", "gnu", "cat"]
    torch.manual_seed(1)
    PredictedEmbeddings(
        token_ids=torch.tensor([d.index(w) for w in words]), embeddings=torch.randn(len(words), 32) * 0.02,
        num_definitions=torch.ones(len(words), dtype=torch.long), embedding_dim=32,
        dictionary_sha256=dictionary_sha256(tiny_dir / "roberta" / "dict.txt"), dictionary_size=len(d),
    ).save(tmp_path / "defemb.pt")
    return tmp_path, d


def surgery_args(tiny_dir, family, tmp, *extra):
    return ["--checkpoint", str(tiny_dir / family / "model.pt"), "--dict", str(tiny_dir / family / "dict.txt"),
            "--embeddings", str(tmp / "defemb.pt"), "--task-data", str(tmp / "task"), *extra]


@pytest.mark.parametrize("family", ["bart", "roberta"])
def test_surgery_writes_every_tied_copy_and_nothing_else(tiny_dir, inputs, family):
    tmp, d = inputs
    out = tmp / "out"
    original_bytes = (tiny_dir / family / "model.pt").read_bytes()
    assert cli_main(surgery_args(tiny_dir, family, tmp, "--alpha", "10", "--out", str(out))) == 0
    assert (tiny_dir / family / "model.pt").read_bytes() == original_bytes  # input untouched
    report = json.loads((out / "surgery.json").read_text())
    # |V| = 99 -> budget floor(9.9) = 9 of the 11 task tokens: all but the two most frequent ("the",
    # "and"), i.e. cat dog and the 7 animal words; the predicted ones among them are replaced.
    assert (report["vocabulary"], report["task_vocabulary"], report["budget"]) == (99, 11, 9)
    replaced = sorted(["quagga", "okapi", "zebu", "emu", "gnu", "cat"], key=d.index)
    assert report["changed_ids"] == [d.index(w) for w in replaced] and report["changed_tokens"] == replaced
    assert report["requested_without_definition"] == 3
    assert sorted(report["without_definition_tokens"]) == ["dog", "dugong", "yak"]
    assert set(report["per_group"]) == {"frequent", "medium", "rare", "all"}
    assert report["per_group"]["all"]["changed"] == 6
    iso = report["isotropy"]
    for when in ("before", "after"):
        for figure in ("paper", "sign_invariant", "max_abs_projection"):
            assert set(iso[when][figure]) == {"frequent", "medium", "rare", "all"}
    # all replaced tokens are rare: the other groups keep their isotropy; the rest is recomputed correctly
    assert report["per_group"]["rare"]["changed"] == 6
    for group in ("frequent", "medium"):
        for figure in ("paper", "sign_invariant"):
            assert iso["after"][figure][group] == iso["before"][figure][group]
    assert "dirs:one-per-eigvec(eig sign)" in iso["conventions"]["paper"]
    new, old = load_state(out), load_state(tiny_dir / family)
    predicted = PredictedEmbeddings.load(tmp / "defemb.pt")
    keys = report["embedding_keys"]
    rows = torch.tensor(report["changed_ids"])
    a, b = new["model"][keys[0]][rows], old["model"][keys[0]][rows]
    assert report["per_group"]["rare"] == pytest.approx({
        "changed": 6, "norm_before": b.norm(dim=1).mean().item(), "norm_after": a.norm(dim=1).mean().item(),
        "cosine_to_original": torch.nn.functional.cosine_similarity(a, b).mean().item()}, abs=1e-4)
    assert len(keys) == (3 if family == "bart" else 2)
    for key in keys:
        for token, vector in zip(predicted.token_ids.tolist(), predicted.embeddings):
            assert torch.equal(new["model"][key][token], vector)
        assert torch.equal(new["model"][key], new["model"][keys[0]])
        untouched = torch.ones(len(d), dtype=torch.bool)
        untouched[report["changed_ids"]] = False
        assert torch.equal(new["model"][key][untouched], old["model"][key][untouched])
    for key in set(new["model"]) - set(keys):
        assert torch.equal(new["model"][key], old["model"][key]), key
    assert set(new) == set(old) and new["cfg"] == old["cfg"]
    assert all(repr(new[k]) == repr(old[k]) for k in new if k != "model")
    assert verify(out, tiny_dir / family) == (True, [])
    assert (out / "dict.txt").read_bytes() == (tiny_dir / family / "dict.txt").read_bytes()
    groups = frequency_groups(len(d), d.nspecial, d.index("<mask>"))
    for when, state in (("before", old), ("after", new)):
        direct = isotropy_by_group(state["model"][keys[0]].float(), groups)
        for group in groups:  # the same Gram bits as defemb-analyze's, so the same signs from eig
            for figure in ("paper", "sign_invariant"):
                assert report["isotropy"][when][figure][group] == pytest.approx(direct[figure][group], rel=1e-5), \
                    (when, figure, group)


@pytest.mark.parametrize("spread", [True, False])
def test_report_figures_are_the_direct_computation_bit_for_bit(tmp_path, monkeypatch, spread):
    """The report's isotropy, with groups that kept their rows carried over and Gram chunks without a
    changed row computed once for both matrices, is exactly isotropy_by_group of each matrix when the
    changed rows fall in every group (and in several chunks of each). When they are all rare, the
    groups they fall in are exactly isotropy_by_group of those groups alone (the other groups' rows are
    not projected again, so "all" sums its rows in other float32 chunks than the full computation)."""
    monkeypatch.setattr(isotropy, "GRAM_ROWS", 64)
    d = load_model_dictionary(write_dict(tmp_path / "dict.txt", [f"w{i}" for i in range(900)]))
    rng = np.random.default_rng(8)
    before = torch.tensor(rng.normal(size=(len(d), 24)) * np.linspace(1.5, 0.3, 24) + 0.2, dtype=torch.float32)
    groups = frequency_groups(len(d), d.nspecial, d.index("<mask>"))
    pool = groups["all"] if spread else groups["rare"][-100:]
    changed = sorted(rng.choice(pool, size=60, replace=False).tolist())
    after = before.clone()
    after[torch.tensor(changed)] = torch.tensor(rng.normal(size=(60, 24)), dtype=torch.float32)
    report = change_report(before, after, changed, d)
    assert all(report["per_group"][g]["changed"] for g in groups) == spread
    touched = {g: ids for g, ids in groups.items() if report["per_group"][g]["changed"]}
    direct = {"before": isotropy_by_group(before, groups, groups_convention(d.nspecial)),
              "after": isotropy_by_group(after, touched, groups_convention(d.nspecial))}
    for figure in ("paper", "sign_invariant", "max_abs_projection"):
        assert report["isotropy"]["before"][figure] == direct["before"][figure], figure
        assert report["isotropy"]["after"][figure] == {**direct["before"][figure], **direct["after"][figure]}, figure
    assert report["isotropy"]["after"]["paper"] != report["isotropy"]["before"]["paper"]


def test_verify_catches_tampering(tiny_dir, inputs, capsys):
    tmp, d = inputs
    out = tmp / "out"
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--out", str(out))) == 0
    assert cli_main(["--verify", str(out), "--against", str(tiny_dir / "bart")]) == 0
    pristine = (out / "model.pt").read_bytes()
    report = json.loads((out / "surgery.json").read_text())

    def tamper(edit):
        state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)  # not mmap: rewrite the file
        edit(state)
        torch.save(state, out / "model.pt")
        ok, problems = verify(out, tiny_dir / "bart")
        (out / "model.pt").write_bytes(pristine)
        assert not ok
        return " | ".join(problems)

    def other_tensor(state):
        state["model"]["encoder.layers.0.fc1.bias"] = state["model"]["encoder.layers.0.fc1.bias"] + 1e-3

    def unlisted_row(state):  # every copy, so they stay tied
        for key in report["embedding_keys"]:
            state["model"][key] = state["model"][key].clone()
            state["model"][key][d.index("the")] += 1

    def untied(state):
        state["model"]["decoder.output_projection.weight"] = state["model"]["decoder.output_projection.weight"].clone()
        state["model"]["decoder.output_projection.weight"][report["changed_ids"][0]] += 1

    def listed_row_value(state):
        for key in report["embedding_keys"]:
            state["model"][key] = state["model"][key].clone()
            state["model"][key][report["changed_ids"][0]] *= 2

    def cfg_field(state):
        state["cfg"]["optimization"]["lr"] = [123.0]

    def dtype(state):
        state["model"]["encoder.layers.0.fc1.bias"] = state["model"]["encoder.layers.0.fc1.bias"].double()

    assert "encoder.layers.0.fc1.bias: changed" in tamper(other_tensor)
    assert "rows outside the 6 listed ones changed, e.g. id %d" % d.index("the") in tamper(unlisted_row)
    assert "decoder.output_projection.weight: no longer equal to its tied copy" in tamper(untied)
    assert "hash mismatch" in tamper(listed_row_value)
    assert "checkpoint field 'cfg' changed" in tamper(cfg_field)
    assert "dtype/shape changed" in tamper(dtype)
    assert verify(out, tiny_dir / "bart") == (True, [])  # restored
    # the wrong original
    assert not verify(out, tiny_dir / "roberta")[0]
    # the CLI: exit 1 with the reasons
    other_tensor_state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    other_tensor(other_tensor_state)
    torch.save(other_tensor_state, out / "model.pt")
    capsys.readouterr()
    assert cli_main(["--verify", str(out), "--against", str(tiny_dir / "bart" / "model.pt")]) == 1
    assert "FAILED" in capsys.readouterr().out
    # not a surgery output
    ok, problems = verify(tiny_dir / "bart", tiny_dir / "bart")
    assert not ok and "surgery.json: not found" in problems[0]


def test_dry_run_writes_nothing(tiny_dir, inputs, capsys):
    tmp, d = inputs
    assert cli_main(surgery_args(tiny_dir, "roberta", tmp, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "would change" in out and f"{d.index('quagga')}:quagga" in out and "6 rows" in out
    assert not (tmp / "out").exists() and sorted(p.name for p in tmp.iterdir()) == ["defemb.pt", "task"]
    assert cli_main(surgery_args(tiny_dir, "roberta", tmp, "--dry-run", "--no-isotropy")) == 0
    assert "isotropy" not in capsys.readouterr().out


def test_v_task_comes_from_the_fine_tuning_split(tiny_dir, inputs, capsys):
    """a token only in the test split is not in V_task unless --task-splits all."""
    from fairseq_defemb.surgery.swap import swap_embeddings

    tmp, d = inputs
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(tmp / "task" / "test.bin"), dtype=np.uint16)
    builder.add_item(torch.tensor([d.index("fox"), d.index("quagga")]))
    builder.finalize(str(tmp / "task" / "test.idx"))
    PredictedEmbeddings(
        token_ids=torch.tensor([d.index("fox"), d.index("cat")]), embeddings=torch.randn(2, 32) * 0.02,
        num_definitions=torch.ones(2, dtype=torch.long), embedding_dim=32,
        dictionary_sha256=dictionary_sha256(tiny_dir / "roberta" / "dict.txt"), dictionary_size=len(d),
    ).save(tmp / "fox.pt")
    common = dict(dict_path=tiny_dir / "bart" / "dict.txt", embeddings=tmp / "fox.pt", task_data=tmp / "task",
                  dry_run=True, isotropy=False)
    train = swap_embeddings(tiny_dir / "bart" / "model.pt", **common)
    assert train["changed_tokens"] == ["cat"] and train["task_vocabulary"] == 11
    assert train["task_splits"] == ["train"] and train["task_files"] == [str(tmp / "task" / "train.bin")]
    everything = swap_embeddings(tiny_dir / "bart" / "model.pt", task_splits="all", **common)
    assert everything["changed_tokens"] == ["cat", "fox"] and everything["task_vocabulary"] == 12
    assert everything["task_files"] == [str(tmp / "task" / name) for name in ("test.bin", "train.bin")]
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--task-splits", "valid", "--dry-run")) == 2
    assert "no valid split (found test, train)" in capsys.readouterr().err
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--task-splits", "test", "--dry-run")) == 0
    assert "V_task from 1 file(s), splits test" in capsys.readouterr().out


def test_fp16_checkpoint_stays_fp16(tiny_dir, inputs):
    tmp, d = inputs
    state = torch.load(tiny_dir / "bart" / "model.pt", map_location="cpu", weights_only=False)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    half = tmp / "half"
    half.mkdir()
    torch.save(state, half / "model.pt")
    (half / "dict.txt").write_bytes((tiny_dir / "bart" / "dict.txt").read_bytes())
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--checkpoint", str(half / "model.pt"), "--dict",
                                 str(half / "dict.txt"), "--out", str(tmp / "out"))) == 0
    new = load_state(tmp / "out")["model"]
    predicted = PredictedEmbeddings.load(tmp / "defemb.pt")
    assert all(v.dtype == torch.float16 for v in new.values() if v.is_floating_point())
    ids = torch.tensor(json.loads((tmp / "out" / "surgery.json").read_text())["changed_ids"])
    rows = {int(t): v for t, v in zip(predicted.token_ids, predicted.embeddings)}
    expected = torch.stack([rows[int(i)] for i in ids]).half()
    assert torch.equal(new["decoder.output_projection.weight"][ids], expected)
    assert verify(tmp / "out", half) == (True, [])


def test_old_style_roberta_names(tiny_dir, inputs):
    """Released roberta.base names the encoder 'decoder.*': both names are tied copies."""
    tmp, d = inputs
    state = torch.load(tiny_dir / "roberta" / "model.pt", map_location="cpu", weights_only=False)
    state["model"] = {k.replace("encoder.", "decoder.", 1) if k.startswith("encoder.") else k: v
                      for k, v in state["model"].items()}
    old = tmp / "old"
    old.mkdir()
    torch.save(state, old / "model.pt")
    (old / "dict.txt").write_bytes((tiny_dir / "roberta" / "dict.txt").read_bytes())
    assert cli_main(surgery_args(tiny_dir, "roberta", tmp, "--checkpoint", str(old), "--dict", str(old / "dict.txt"),
                                 "--out", str(tmp / "out"))) == 0
    report = json.loads((tmp / "out" / "surgery.json").read_text())
    assert report["embedding_keys"] == ["decoder.sentence_encoder.embed_tokens.weight", "decoder.lm_head.weight"]
    new = load_state(tmp / "out")["model"]
    quagga = PredictedEmbeddings.load(tmp / "defemb.pt").embeddings[0]
    for key in report["embedding_keys"]:
        assert torch.equal(new[key][d.index("quagga")], quagga)
    assert verify(tmp / "out", old)[0]


def zip_records(path) -> dict[str, bytes]:
    """Every record of a zip checkpoint, after checking the CRC-32 in its central directory entry and
    in its data descriptor (or local header) against its bytes."""
    records = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            records[info.filename] = data = archive.read(info)  # checks the central directory's CRC
            raw.seek(info.header_offset)
            header = raw.read(30)
            start = info.header_offset + 30 + sum(struct.unpack("<HH", header[26:30]))
            if info.flag_bits & 0x08:
                raw.seek(start + info.compress_size)
                descriptor = raw.read(8)
                crc = descriptor[4:8] if descriptor[:4] == b"PK\x07\x08" else descriptor[:4]
            else:
                crc = header[14:18]
            assert struct.unpack("<I", crc)[0] == zlib.crc32(data) == info.CRC, info.filename
    return records


@pytest.mark.parametrize("layout", ["shared", "separate", "view", "legacy"])
def test_output_is_the_input_file_with_the_embedding_records_rewritten(tiny_dir, inputs, layout):
    """Tied copies sharing one storage (as torch.save keeps them), one storage each, or a view into a
    larger storage: the output file is the input's bytes with only the embedding records and their
    CRC-32 rewritten. A legacy (non-zip) checkpoint is written by torch.save instead."""
    tmp, d = inputs
    state = torch.load(tiny_dir / "bart" / "model.pt", map_location="cpu", weights_only=False)
    keys = embedding_keys(state["model"])
    E = state["model"][keys[0]]
    if layout == "separate":
        state["model"].update({key: E.clone() for key in keys})
    elif layout == "view":  # the storage holds a row of 7s before the matrix and a row of 9s after it
        padded = torch.cat([torch.full((1, E.size(1)), 7.0), E, torch.full((1, E.size(1)), 9.0)])
        state["model"].update({key: padded[1:-1] for key in keys})
    src = tmp / layout
    src.mkdir()
    torch.save(state, src / "model.pt", _use_new_zipfile_serialization=layout != "legacy")
    shutil.copyfile(tiny_dir / "bart" / "dict.txt", src / "dict.txt")
    new_matrix = torch.randn(E.shape)
    assert copy_with_embedding(src / "model.pt", tmp / "direct.pt", keys, new_matrix) == (layout != "legacy")
    if layout != "legacy":
        assert all(torch.equal(load_state(tmp / "direct.pt")["model"][key], new_matrix) for key in keys)
    else:
        assert not (tmp / "direct.pt").exists()
    out = tmp / "out"
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--checkpoint", str(src), "--dict", str(src / "dict.txt"),
                                 "--out", str(out))) == 0
    assert verify(out, src) == (True, [])
    if layout == "legacy":
        return
    old, new = zip_records(src / "model.pt"), zip_records(out / "model.pt")
    assert (out / "model.pt").stat().st_size == (src / "model.pt").stat().st_size and old.keys() == new.keys()
    rewritten = [name for name in old if old[name] != new[name]]
    assert len(rewritten) == (len(keys) if layout == "separate" else 1)
    if layout == "view":
        row = E.size(1) * 4
        assert new[rewritten[0]][:row] == old[rewritten[0]][:row] == torch.full((E.size(1),), 7.0).numpy().tobytes()
        assert new[rewritten[0]][-row:] == old[rewritten[0]][-row:] == torch.full((E.size(1),), 9.0).numpy().tobytes()


def test_a_failed_write_leaves_nothing_behind(tiny_dir, inputs, monkeypatch, capsys):
    """The checkpoint is written in a background thread while the report is computed: its error
    still fails the command, and the half-written output directory is removed."""
    tmp, _ = inputs

    def disk_full(source, dest, *rest):
        dest.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fairseq_defemb.surgery.swap.write_checkpoint", disk_full)
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--out", str(tmp / "out"))) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp / "out").exists() and not list(tmp.glob(".out*"))


@pytest.mark.parametrize("method", ["deldirection", "deldirection-centred", "del-zscore"])
def test_baseline_modes_change_the_whole_matrix(tiny_dir, tmp_path, method, capsys):
    out = tmp_path / method
    assert cli_main(["--checkpoint", str(tiny_dir / "bart" / "model.pt"), "--dict", str(tiny_dir / "bart" / "dict.txt"),
                     "--method", method, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "isotropy (paper: eig's signs) frequent" in printed and "isotropy (sign-invariant)" in printed
    new = load_state(out)["model"]
    old = load_state(tiny_dir / "bart")["model"]["encoder.embed_tokens.weight"]
    transform = {"deldirection": del_direction, "deldirection-centred": del_direction_centred, "del-zscore": del_zscore}[method]
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        assert torch.equal(new[key], transform(old))  # every row, specials included (paper: the whole E)
    report = json.loads((out / "surgery.json").read_text())
    assert report["num_changed"] == old.size(0) and report["rows"].startswith("all")
    assert report["isotropy"]["after"]["paper"]["all"] != report["isotropy"]["before"]["paper"]["all"]
    assert verify(out, tiny_dir / "bart")[0]


def test_overwrite(tiny_dir, inputs, capsys):
    tmp, _ = inputs
    out = tmp / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--out", str(out))) == 2
    assert "exists" in capsys.readouterr().err and (out / "keep").exists()
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--out", str(out), "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dict.txt", "model.pt", "surgery.json"]


def test_bad_inputs_leave_nothing_behind(tiny_dir, inputs, capsys):
    tmp, d = inputs
    out = tmp / "out"

    def fails(args, *expected):
        assert cli_main(args) == 2
        err = capsys.readouterr().err
        for text in expected:
            assert text in err, (text, err)
        assert not out.exists() and not list(tmp.glob(".out*"))

    def with_arg(flag, value, family="roberta"):
        args = surgery_args(tiny_dir, family, tmp, "--out", str(out))
        if flag in args:
            args[args.index(flag) + 1] = str(value)
        else:
            args += [flag, str(value)]
        return args

    # the wrong dictionary: same size, another order (other hash)
    fails(with_arg("--dict", write_dict(tmp / "other_dict.txt", list(reversed(TINY_WORDS)))),
          "other_dict.txt differs from", "pass --dict")
    # the wrong dictionary size
    fails(with_arg("--dict", write_dict(tmp / "short_dict.txt", TINY_WORDS[:-3])),
          "embedding rows but", "short_dict.txt", "pass the dict.txt that ships with this checkpoint")
    # the wrong dimension
    p = PredictedEmbeddings.load(tmp / "defemb.pt")
    p.embeddings, p.embedding_dim = torch.zeros(len(p.token_ids), 16), 16
    p.save(tmp / "small.pt")
    fails(with_arg("--embeddings", tmp / "small.pt"), "small.pt holds 16-dimensional", "embeds in 32")
    # predictions for another dictionary
    p = PredictedEmbeddings.load(tmp / "defemb.pt")
    p.dictionary_sha256 = "0" * 64
    p.save(tmp / "otherdict.pt")
    fails(with_arg("--embeddings", tmp / "otherdict.pt"), "otherdict.pt was predicted for another dictionary",
          "rerun defemb-predict")
    # missing files
    fails(with_arg("--checkpoint", tmp / "nope.pt"), "nope.pt: checkpoint not found")
    fails(with_arg("--embeddings", tmp / "nope_emb.pt"), "nope_emb.pt: embeddings file not found", "defemb-predict")
    fails(with_arg("--task-data", tmp / "nope_task"), "nope_task: not found")
    # not a checkpoint
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint")
    fails(with_arg("--checkpoint", tmp / "garbage.pt"), "garbage.pt: cannot be read as a torch checkpoint")
    # task data binarized with another dictionary
    (tmp / "task" / "dict.txt").write_bytes((tmp / "other_dict.txt").read_bytes())
    fails(surgery_args(tiny_dir, "roberta", tmp, "--out", str(out)), "task", "binarized with another dictionary",
          "--srcdict")
    (tmp / "task" / "dict.txt").unlink()
    # untied input
    state = torch.load(tiny_dir / "bart" / "model.pt", map_location="cpu", weights_only=False)
    state["model"]["decoder.output_projection.weight"] = state["model"]["decoder.output_projection.weight"] + 1
    (tmp / "untied").mkdir()
    torch.save(state, tmp / "untied" / "model.pt")
    fails(with_arg("--checkpoint", tmp / "untied" / "model.pt", "bart"),
          "decoder.output_projection.weight differs from encoder.embed_tokens.weight", "tied")
    # alpha outside 0..100
    for alpha in ("120", "-1"):
        fails(with_arg("--alpha", alpha), f"--alpha {alpha}: must be a percentage in [0, 100]")
    # definitionemb without its inputs
    fails(["--checkpoint", str(tiny_dir / "bart"), "--out", str(out)], "needs --embeddings")


def save_predictions(path, d, dict_path, ids: list[int], embeddings: torch.Tensor) -> None:
    PredictedEmbeddings(token_ids=torch.tensor(ids), embeddings=embeddings, num_definitions=torch.ones(len(ids), dtype=torch.long),
                        embedding_dim=embeddings.size(1), dictionary_sha256=dictionary_sha256(dict_path),
                        dictionary_size=len(d)).save(path)


def test_sanity_guard_stops_rows_of_the_wrong_scale_unless_forced(tiny_dir, inputs, capsys):
    tmp, d = inputs
    p = PredictedEmbeddings.load(tmp / "defemb.pt")
    save_predictions(tmp / "x50.pt", d, tiny_dir / "bart" / "dict.txt", p.token_ids.tolist(), p.embeddings * 50)
    args = surgery_args(tiny_dir, "bart", tmp, "--alpha", "10", "--out", str(tmp / "out"))
    args[args.index("--embeddings") + 1] = str(tmp / "x50.pt")
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "x50.pt" in err and "outside [0.333, 3]" in err and "--force" in err, err
    assert not (tmp / "out").exists() and not list(tmp.glob(".out*"))
    assert cli_main([*args, "--force"]) == 0
    assert "FORCED past" in capsys.readouterr().out
    sanity = json.loads((tmp / "out" / "surgery.json").read_text())["sanity"]
    assert sanity["forced"] and sanity["norm_ratio"] > 30 and len(sanity["problems"]) == 1
    # the figures are recorded when the rows pass too
    assert cli_main([*surgery_args(tiny_dir, "bart", tmp, "--alpha", "10", "--out", str(tmp / "ok"))]) == 0
    sanity = json.loads((tmp / "ok" / "surgery.json").read_text())["sanity"]
    assert not sanity["forced"] and not sanity["problems"] and 1 / 3 < sanity["norm_ratio"] < 3
    assert sanity["cosine_z"] is not None and sanity["rows"] == 6  # fewer than 10 rows: direction not judged


def test_sanity_guard_stops_rows_from_another_space(tiny_dir, inputs):
    """Over >= 10 rows, right-norm random directions (another model's space, or noise) sit at the
    chance level and are refused; the original rows plus noise pass."""
    tmp, d = inputs
    dict_path = tiny_dir / "bart" / "dict.txt"
    words = "the cat and dog quagga okapi dugong zebu emu gnu yak".split()
    ids = [d.index(w) for w in words]
    E = load_state(tiny_dir / "bart")["model"]["encoder.embed_tokens.weight"]
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(len(ids), E.size(1), generator=g)
    random_rows = noise / noise.norm(dim=1, keepdim=True) * E[ids].norm(dim=1, keepdim=True)
    kwargs = {"dict_path": dict_path, "task_data": [tmp / "task"], "alpha": 100, "dry_run": True}
    save_predictions(tmp / "random.pt", d, dict_path, ids, random_rows)
    with pytest.raises(SurgeryError, match="standard errors above chance, 3 needed") as refused:
        swap_embeddings(tiny_dir / "bart", embeddings=tmp / "random.pt", **kwargs)
    assert "outside" not in str(refused.value)  # the norms are right: only the direction is refused
    save_predictions(tmp / "close.pt", d, dict_path, ids, E[ids] + 0.5 * random_rows)
    sanity = swap_embeddings(tiny_dir / "bart", embeddings=tmp / "close.pt", **kwargs)["sanity"]
    assert sanity["rows"] == 11 and not sanity["problems"] and sanity["cosine_z"] > 3
    forced = swap_embeddings(tiny_dir / "bart", embeddings=tmp / "random.pt", force=True, **kwargs)["sanity"]
    assert forced["forced"] and forced["cosine_z"] < 3


@pytest.mark.slow
def test_surgered_bart_fine_tunes_and_generates_with_stock_fairseq(tiny_dir, inputs):
    """The BART summarization recipe (fairseq examples/bart/README.summarization.md): fairseq-preprocess
    with the model's dict.txt as --srcdict/--tgtdict, fine-tune with --task translation from the
    surgered checkpoint, generate one line per input.

    The translation task's dictionary has no <mask>, so it is one row shorter than the denoising
    checkpoint: BARTModel.upgrade_state_dict_named drops the last embedding row (<mask>) on load, as it
    does for the released bart.large. Surgery never touches <mask>, so every replaced row survives
    at its id; the test checks that in the fine-tuned checkpoint."""
    tmp, d = inputs
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--out", str(tmp / "bart.defemb"))) == 0
    raw = tmp / "raw"
    raw.mkdir()
    src = ["the cat is a small animal", "quagga and okapi are animals", "the sun is a star", "an owl is a bird",
           "the emu is a large bird", "a gnu is a large animal", "the river has water"]
    for split, lines in (("train", src), ("valid", src[:3]), ("test", src[3:])):
        (raw / f"{split}.source").write_text("\n".join(lines) + "\n")
        (raw / f"{split}.target").write_text("\n".join(" ".join(line.split()[:3]) for line in lines) + "\n")
    dict_txt = tiny_dir / "bart" / "dict.txt"
    bin_dir = tmp / "bin"
    subprocess.run([str(VENV_BIN / "fairseq-preprocess"), "--source-lang", "source", "--target-lang", "target",
                    "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"), "--testpref", str(raw / "test"),
                    "--destdir", str(bin_dir), "--srcdict", str(dict_txt), "--tgtdict", str(dict_txt), "--workers", "1"],
                   check=True, capture_output=True)
    dims = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
            "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
            "--decoder-attention-heads", "2", "--max-source-positions", "64", "--max-target-positions", "64"]
    save = tmp / "ft"
    train = subprocess.run([
        str(VENV_BIN / "fairseq-train"), str(bin_dir), "--user-dir", str(REPO / "fairseq_defemb"),
        "--restore-file", str(tmp / "bart.defemb" / "model.pt"), "--reset-optimizer", "--reset-dataloader",
        "--reset-meters", "--task", "translation", "--source-lang", "source", "--target-lang", "target",
        "--truncate-source", "--layernorm-embedding", "--share-all-embeddings", "--share-decoder-input-output-embed",
        "--arch", "bart_base", *dims, "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "256", "--max-update", "2", "--cpu",
        "--save-dir", str(save), "--num-workers", "0", "--required-batch-size-multiple", "1",
        "--skip-invalid-size-inputs-valid-test", "--no-epoch-checkpoints",
    ], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Loaded checkpoint" in train.stdout + train.stderr
    tuned = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    report = json.loads((tmp / "bart.defemb" / "surgery.json").read_text())
    predicted = PredictedEmbeddings.load(tmp / "defemb.pt")
    by_id = dict(zip(predicted.token_ids.tolist(), predicted.embeddings))
    for key in report["embedding_keys"]:
        assert tuned[key].shape == (len(d) - 1, 32)  # <mask> dropped on load
        for i in report["changed_ids"]:  # 2 Adam steps at lr 1e-3 move a weight by ~2e-3
            torch.testing.assert_close(tuned[key][i], by_id[i], atol=1e-2, rtol=0)
    gen = subprocess.run([
        str(VENV_BIN / "fairseq-generate"), str(bin_dir), "--user-dir", str(REPO / "fairseq_defemb"),
        "--path", str(save / "checkpoint_last.pt"), "--task", "translation", "--source-lang", "source",
        "--target-lang", "target", "--gen-subset", "test", "--beam", "2", "--max-len-b", "10", "--cpu",
        "--batch-size", "3", "--required-batch-size-multiple", "1", "--num-workers", "0",
    ], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr[-3000:]
    hypotheses = [line for line in gen.stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == len(src[3:])
