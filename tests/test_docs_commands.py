"""The command blocks of docs/corpus.md, definition-model.md, surgery.md and hugging-face.md run as
written, in a directory laid out as each block expects, with at most its settings lines replaced
(tiny models built here, CPU options, a few updates); each page says what its test replaced."""
import json
import os
import shutil
import subprocess

import pytest
import torch

from conftest import REPO, VENV_BIN
from doc_blocks import doc_block, quoted, run_bash, with_settings
from test_convert_hf import WORDS as BERT_WORDS, save_tiny_bert
from test_corpus_alignment import GPT2, write_gpt2_dict
from test_readme_python import python_block
from test_readme_recipes import predictions_near_the_rows
from tiny_hf import BPE_TEXT, save_tiny_hf
from tiny_models import TINY_WORDS, make_tiny_checkpoint
from fairseq_defemb.cli.surgery import main as surgery_main
from fairseq_defemb.data.embedding_file import PredictedEmbeddings

CPU_TRAINING = ["--max-tokens", "1024", "--max-update", "3", "--warmup-updates", "1", "--cpu", "--num-workers", "0",
                "--no-epoch-checkpoints"]


@pytest.mark.slow
def test_definition_model_blocks_run(tmp_path):
    """corpus -> training -> prediction, then defemb-fit and both warm starts, in one directory."""
    gpt2_dict = write_gpt2_dict(tmp_path / "gpt2-dict.txt")
    make_tiny_checkpoint(tmp_path / "bart", "bart", dict_path=gpt2_dict)
    make_tiny_checkpoint(tmp_path / "roberta", "roberta", dict_path=gpt2_dict)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(GPT2 / name, tmp_path / name)
    (tmp_path / "fairseq_defemb").symlink_to(REPO / "fairseq_defemb")  # the blocks run from the repository's root
    run_bash(with_settings(doc_block("corpus"), {
        "PLM": "bart", "CORPUS": quoted(["--source", "numbers", "--valid-size", "20", "--no-progress"])}), tmp_path)
    assert json.loads((tmp_path / "defs-bin" / "corpus.json").read_text())["splits"]["valid"] == 20
    run_bash(with_settings(doc_block("train-definition-model"), {
        "PLM": "bart", "ARCH": "defemb_bart", "TRAIN": quoted(CPU_TRAINING)}), tmp_path)
    trained = PredictedEmbeddings.load(tmp_path / "defemb.pt")
    assert len(trained.token_ids) > 1000  # every all-digit token of GPT-2's vocabulary the corpus defines
    run_bash(with_settings(doc_block("fit-definition-model"), {
        "PLM": "roberta", "ARCH": "defemb_roberta", "TRAIN": quoted(CPU_TRAINING)}), tmp_path)
    fitted = PredictedEmbeddings.load(tmp_path / "defemb-fit.pt")
    assert torch.equal(fitted.token_ids, trained.token_ids)
    report = json.loads((tmp_path / "fit.json").read_text())
    assert report["valid"]["fitted_W"]["loss"] < report["valid"]["random_W"]["loss"]
    for run in ("warm-start", "warm-start-refit"):
        state = torch.load(tmp_path / run / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        assert state["optimizer_history"][-1]["num_updates"] == 3


def binarize(root, dict_path, name: str, lines: dict[str, list[str]], only_source: bool) -> None:
    """fairseq-preprocess of text over the tiny dictionary: a translation pair source/target, or one
    side (`--only-source`) as fairseq's GLUE script writes input0/input1."""
    raw = root / f"{name}-raw"
    raw.mkdir(parents=True)
    for file, text in lines.items():
        (raw / file).write_text("\n".join(text) + "\n")
    common = [str(VENV_BIN / "fairseq-preprocess"), "--destdir", root / name, "--srcdict", dict_path, "--workers", "1"]
    if only_source:
        command = [*common, "--only-source", "--trainpref", raw / "train"]
    else:
        command = [*common, "--source-lang", "source", "--target-lang", "target", "--tgtdict", dict_path,
                   "--trainpref", raw / "train"]
    subprocess.run(command, check=True, capture_output=True)


@pytest.mark.slow
def test_surgery_block_runs(tiny_dir, tmp_path):
    shutil.copytree(tiny_dir / "bart", tmp_path / "bart.large")
    shutil.copytree(tiny_dir / "roberta", tmp_path / "roberta.base")
    dict_path = tmp_path / "bart.large" / "dict.txt"
    words = TINY_WORDS[40:]  # frequent and rare ones, so the task has a rare band
    sentences = [" ".join(words[(i * 7 + k) % len(words)] for k in range(8)) for i in range(12)]
    binarize(tmp_path, dict_path, "cnn_dm-bin", {"train.source": sentences, "train.target": sentences[::-1]}, False)
    binarize(tmp_path, dict_path, "RTE-bin/input0", {"train": sentences[:6]}, True)
    binarize(tmp_path, dict_path, "RTE-bin/input1", {"train": sentences[6:]}, True)
    predictions_near_the_rows(dict_path, 32).save(tmp_path / "defemb.pt")
    out = run_bash(doc_block("surgery"), tmp_path)
    report = json.loads((tmp_path / "bart.large.defemb" / "surgery.json").read_text())
    assert report["num_changed"] > 0 and report["method"] == "definitionemb"
    assert "rows would change" in out and "dry run: nothing written" in out
    assert not (tmp_path / "roberta.base.defemb").exists()  # the dry run wrote nothing
    assert json.loads((tmp_path / "bart.large.deldir" / "surgery.json").read_text())["method"] == "deldirection"


@pytest.mark.slow
def test_convert_and_export_blocks_run(tmp_path):
    save_tiny_hf(tmp_path / "bart-large", "bart")
    save_tiny_hf(tmp_path / "roberta-base", "roberta")
    save_tiny_bert(tmp_path / "all-MiniLM-L6-v2", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS])
    run_bash(doc_block("hf-convert"), tmp_path)
    for out in ("bart.large", "roberta.base", "minilm-fairseq"):  # --verify passed: the block's commands exited 0
        assert (tmp_path / out / "model.pt").is_file() and (tmp_path / out / "conversion.json").is_file()
    assert surgery_main(["--checkpoint", str(tmp_path / "bart.large"), "--method", "deldirection", "--no-isotropy",
                         "--out", str(tmp_path / "bart.large.defemb")]) == 0
    run_bash(doc_block("hf-export"), tmp_path)
    assert (tmp_path / "bart-large-defemb-hf" / "model.safetensors").is_file()


def hf_download_stand_in(bin_dir, model_dir) -> None:
    """An `hf` whose `download MODEL --local-dir DIR` copies a model built here (no network)."""
    bin_dir.mkdir()
    script = bin_dir / "hf"
    script.write_text(f'#!/bin/sh\n[ "$1" = download ] && [ "$3" = --local-dir ] && exec cp -r "{model_dir}" "$4"\n'
                      'echo "hf stand-in: expected download MODEL --local-dir DIR" >&2; exit 2\n')
    script.chmod(0o755)


@pytest.mark.slow
def test_transformers_recipe_runs_as_written(tmp_path, monkeypatch):
    """docs/hugging-face.md's two blocks, bash then Python, in one directory."""
    save_tiny_hf(tmp_path / "hub" / "bart", "bart", max_position_embeddings=130)
    hf_download_stand_in(tmp_path / "stand-in", tmp_path / "hub" / "bart")
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    # definitions and task text in the tiny BPE's own words, so prompts stay short
    entries = [("sediment", "noun", "The matter settled at the bottom of the river."),
               ("river", "noun", "Definitions give rare tokens meaning."), ("quagga", "noun", "A quagga stood tall!")]
    (work / "wiktionary.jsonl").write_text("".join(
        json.dumps({"word": w, "pos": p, "lang_code": "en", "senses": [{"glosses": [g]}]}) + "\n" for w, p, g in entries))
    sentences = [" ".join(BPE_TEXT.split()[i:i + 9]) for i in range(0, 18, 3)]
    (work / "train.source").write_text("\n".join(sentences) + "\n")
    (work / "train.target").write_text("\n".join(s.split(".")[0] for s in sentences) + "\n")
    settings = {
        "WIKTIONARY": "wiktionary.jsonl", "WORKERS": "1",
        "DEFEMB_TRAIN": quoted(["--arch", "defemb_bart", "--max-update", "2", "--max-tokens", "2048",
                                "--warmup-updates", "1", "--no-epoch-checkpoints"]),
        "SURGERY": "--force",  # 2 updates: an undertrained model, whose rows the sanity guard refuses
    }
    path = f"{tmp_path / 'stand-in'}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    run_bash(with_settings(doc_block("hf-recipe"), settings), work, env={"PATH": path})
    assert (work / "bart-large-defemb-hf" / "model.safetensors").is_file()  # written after --verify passed
    assert json.loads((work / "bart.large.defemb" / "surgery.json").read_text())["num_changed"] > 0

    settings, body = python_block("hf-recipe-python")
    monkeypatch.chdir(work)
    namespace: dict = {}
    exec(compile(settings, "docs/hugging-face.md", "exec"), namespace)
    assert namespace["MODEL"] == "bart-large-defemb-hf"
    namespace.update(STEPS={"max_steps": 3, "warmup_steps": 0}, DEVICE={"use_cpu": True})
    exec(compile(body, "docs/hugging-face.md", "exec"), namespace)
    from transformers import AutoModelForSeq2SeqLM

    exported = AutoModelForSeq2SeqLM.from_pretrained(work / "bart-large-defemb-hf", local_files_only=True)
    tuned = namespace["model"]
    assert not torch.equal(tuned.model.shared.weight.detach(), exported.model.shared.weight)  # it trained
    assert tuned.lm_head.weight.data_ptr() == tuned.model.shared.weight.data_ptr()  # still tied
