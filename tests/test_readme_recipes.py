"""The recipes of README.md and docs/fairseq-recipes.md run as written: an edit that breaks a command fails here.

Each recipe is a ```bash block whose first lines are settings (``NAME=value``). A test replaces only
those settings (paths of tiny models and data, CPU options, a few updates) and runs every other line
of the block unchanged with bash -euo pipefail, from a directory laid out as the recipe expects.
"""
import importlib.resources
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, VENV_BIN
from doc_blocks import doc_block, quoted, run_bash, with_settings
from test_corpus_alignment import GPT2, write_gpt2_dict
from tiny_models import ARCH_ARGS, make_tiny_checkpoint
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix
from fairseq_defemb.data.vocabulary import dictionary_sha256, load_model_dictionary


def predictions_near_the_rows(dict_path, dim: int, seed: int = 0) -> PredictedEmbeddings:
    """Predictions in defemb-predict's format for every non-special symbol (the recipe tests check
    the commands, the prediction tests check the values): the checkpoint's own rows plus noise, so
    surgery's sanity guard sees rows of the right scale and space, as a trained model's."""
    dictionary = load_model_dictionary(dict_path)
    ids = torch.arange(dictionary.nspecial, len(dictionary) - 1)
    generator = torch.Generator().manual_seed(seed)
    E = read_embedding_matrix(Path(dict_path).parent / "model.pt")
    noise = torch.randn(len(ids), dim, generator=generator) * E[ids].norm(dim=1).mean() / dim ** 0.5
    return PredictedEmbeddings(token_ids=ids, embeddings=E[ids] + 0.5 * noise,
                               num_definitions=torch.ones(len(ids), dtype=torch.long), embedding_dim=dim,
                               dictionary_sha256=dictionary_sha256(dict_path), dictionary_size=len(dictionary))


def gpt2_ids(lines: list[str]) -> list[str]:
    """Text lines as GPT-2 BPE ids, as fairseq's multiprocessing_bpe_encoder writes them."""
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    bpe = get_encoder(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))
    return [" ".join(map(str, bpe.encode(line))) for line in lines]


def binarize_rte_like(root: Path, dict_path: Path) -> None:
    """input0/input1/label as fairseq's preprocess_GLUE_tasks.sh writes them, over GPT-2 BPE; the
    numbers in the sentences are what a `--source numbers` corpus defines. " 1850" is only in input1."""
    rng = random.Random(0)
    words = "the river was high in 1999 and 2004 when 42 boats came to the sea at dawn".split()
    raw = root / "raw"
    raw.mkdir()
    for split, n in (("train", 32), ("dev", 8)):
        for name in ("input0", "input1"):
            lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(n)]
            if split == "train":
                lines.append("the town of 1850 boats" if name == "input1" else "the sea")
            (raw / f"{split}.{name}").write_text("\n".join(gpt2_ids(lines)) + "\n")
        labels = [rng.choice(["entailment", "not_entailment"]) for _ in range(n + (split == "train"))]
        (raw / f"{split}.label").write_text("\n".join(labels) + "\n")
    preprocess = [str(VENV_BIN / "fairseq-preprocess"), "--only-source", "--workers", "1"]
    for name in ("input0", "input1"):
        subprocess.run([*preprocess, "--trainpref", raw / f"train.{name}", "--validpref", raw / f"dev.{name}",
                        "--destdir", root / "RTE-bin" / name, "--srcdict", dict_path], check=True, capture_output=True)
    subprocess.run([*preprocess, "--trainpref", raw / "train.label", "--validpref", raw / "dev.label",
                    "--destdir", root / "RTE-bin" / "label"], check=True, capture_output=True)


def tiny_gpt2_roberta(root) -> None:
    """plm/ (a 2-layer RoBERTa over GPT-2's real vocabulary) with GPT-2's BPE files beside it, and
    RTE-bin/ binarized over it."""
    make_tiny_checkpoint(root / "plm", "roberta", dict_path=write_gpt2_dict(root / "gpt2-dict.txt"))
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(GPT2 / name, root / name)
    binarize_rte_like(root, root / "plm" / "dict.txt")


def tiny_glue_dir(root) -> None:
    """What the GLUE recipes expect in their directory, tiny: tiny_gpt2_roberta's plm/ and RTE-bin/,
    and defemb.pt (predictions for every row)."""
    tiny_gpt2_roberta(root)
    predictions_near_the_rows(root / "plm" / "dict.txt", 32).save(root / "defemb.pt")


@pytest.mark.slow
def test_pipeline_runs_as_written(tmp_path):
    """The README's six commands on a tiny RoBERTa over GPT-2's real vocabulary, RTE-shaped data."""
    plm = tmp_path / "plm"
    tiny_gpt2_roberta(tmp_path)
    sizes = ARCH_ARGS["roberta"][2]
    finetune = ["common.fp16=false", "common.cpu=true", "task.max_positions=64",
                *(f"+model.{sizes[i].removeprefix('--').replace('-', '_')}={sizes[i + 1]}" for i in range(0, 8, 2)),
                "optimization.max_update=3", "dataset.batch_size=8", "common.log_format=simple"]
    settings = {
        "PLM": "plm", "DATA": "RTE-bin", "CORPUS": quoted(["--source", "numbers", "--valid-size", "20", "--workers", "1"]),
        "TRAIN": quoted(["--arch", "defemb_roberta", "--max-update", "3", "--max-tokens", "512", "--cpu",
                         "--num-workers", "0", "--warmup-updates", "1"]),
        "SURGERY": "--force",  # 3 updates: an undertrained model, whose rows the sanity guard refuses
        "FINETUNE": quoted(finetune),
    }
    run_bash(with_settings(doc_block("pipeline"), settings), tmp_path)
    report = json.loads((tmp_path / "plm.defemb" / "surgery.json").read_text())
    dictionary = load_model_dictionary(plm / "dict.txt")
    assert dictionary.index(gpt2_ids([" 1850"])[0]) in report["changed_ids"]  # only input1 has it
    # fine-tuning started from the surgered rows, not the original ones
    key = "encoder.sentence_encoder.embed_tokens.weight"
    tuned = torch.load(tmp_path / "checkpoints" / "checkpoint_best.pt", map_location="cpu", weights_only=False)["model"][key]
    surgered = torch.load(tmp_path / "plm.defemb" / "model.pt", map_location="cpu", weights_only=False)["model"][key]
    original = torch.load(plm / "model.pt", map_location="cpu", weights_only=False)["model"][key]
    rows = torch.tensor(report["changed_ids"])
    assert (tuned[rows] - surgered[rows]).abs().max() < 1e-2 < (tuned[rows] - original[rows]).abs().max()
    analysis = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "drift" in analysis and "DefinitionEMB" in analysis["matrices"]


def aclsum_as_cnndm(out, docs: dict[str, int]) -> None:
    """ACLSum papers as {split}.source / summaries as {split}.target, short enough for a 64-position BART."""
    data = importlib.resources.files("aclsum") / "dataset"
    out.mkdir()
    for split, n in docs.items():
        records = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()[:n]]
        source = [" ".join(" ".join(r["sentences"]["abstract"]).split()[:40]) for r in records]
        target = [" ".join(" ".join(r["summary"].values()).split()[:16]) for r in records]
        (out / f"{split}.source").write_text("\n".join(source) + "\n")
        (out / f"{split}.target").write_text("\n".join(target) + "\n")


def kaikki_jsonl(path) -> None:
    entries = [("quagga", "noun", "An extinct subspecies of the plains zebra."),
               ("summarization", "noun", "The act of summarizing; a short account of the main points."),
               ("corpus", "noun", "A collection of writings in the form of an electronic database."),
               ("everlasting", "adj", "Lasting or enduring forever.")]
    path.write_text("".join(json.dumps({"word": w, "pos": p, "lang_code": "en", "senses": [{"glosses": [g]}]}) + "\n"
                            for w, p, g in entries))


def tiny_summarization_dir(root) -> None:
    """What the BART summarization recipes expect in their directory, tiny: plm/ (a 2-layer BART over
    GPT-2's vocabulary), cnn_dm/ (12/3/4 ACLSum papers), wiktionary.jsonl, manual.tsv, GPT-2's BPE files."""
    make_tiny_checkpoint(root / "plm", "bart", dict_path=write_gpt2_dict(root / "gpt2-dict.txt"))
    aclsum_as_cnndm(root / "cnn_dm", {"train": 12, "val": 3, "test": 4})
    kaikki_jsonl(root / "wiktionary.jsonl")
    (root / "manual.tsv").write_text("ACLSum\tname\ta data set of scientific papers and their summaries\n")
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(GPT2 / name, root / name)


@pytest.mark.slow
def test_bart_summarization_recipe_runs_as_written(tmp_path):
    tiny_summarization_dir(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    sizes = ARCH_ARGS["bart"][2][:-2]  # the model's sizes, without the pretraining task's --tokens-per-sample
    settings = {
        "PLM": "plm", "CNNDM": "cnn_dm", "WIKTIONARY": "wiktionary.jsonl", "MANUAL": "manual.tsv",
        "DEFEMB_TRAIN": quoted(["--arch", "defemb_bart", "--max-update", "2", "--max-tokens", "2048",
                                "--warmup-updates", "1", "--no-epoch-checkpoints"]),
        "ARCH": quoted(["bart_base", *sizes]), "DEVICE": "--cpu", "UPDATES": "2",
        "GENERATE": quoted(["--max-len-b", "12", "--min-len", "2", "--batch-size", "4"]), "WORKERS": "1",
        "SURGERY": "--force",  # 2 updates: an undertrained model, whose rows the sanity guard refuses
    }
    run_bash(with_settings(doc_block("bart-cnndm"), settings), tmp_path)
    hypotheses = (tmp_path / "test.hypo").read_text().split("\n")[:-1]
    assert len(hypotheses) == 4  # one per test article, none dropped by the last batch
    assert (tmp_path / "plm.defemb" / "surgery.json").is_file() and (tmp_path / "defemb.pt").is_file()
    # docs/analysis.md's block, in the same directory, on what the recipe wrote
    run_bash(with_settings(doc_block("analysis"), {"PLM": "plm", "TUNED": "checkpoints/checkpoint_best.pt"}), tmp_path)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "drift" in report and "DefinitionEMB" in report["matrices"]
    assert (tmp_path / "rare-test-ids.txt").is_file()
