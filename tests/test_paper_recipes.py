"""The paper's recipes pass exactly the options docs/reproducing-the-paper.md lists for them.

Each script (examples/train_definitionemb_*.sh, examples/paper/*.sh) runs here with the commands it
starts (fairseq-train, summarize.py, defemb-analyze) replaced by a recorder on PATH; the recorded
command line must hold every option and value of the "Ours" column of the script's table, and no
other. The per-data-set and per-task tables must be what examples/paper/settings.sh sets. Two slow
tests run the pipelines end to end on a tiny BART and RoBERTa on the CPU.
"""
import json
import os
import re
import shlex
import subprocess
from collections import Counter

import pytest
import torch

from conftest import REPO, VENV_BIN
from doc_blocks import run_bash
from test_readme_recipes import tiny_glue_dir, tiny_summarization_dir
from tiny_models import ARCH_ARGS

DOC = REPO / "docs" / "reproducing-the-paper.md"
PAPER = REPO / "examples" / "paper"
DATASETS = ("cnndm", "xsum", "billsum", "bigpatent")
GLUE = [(model, task) for model in ("roberta", "bart") for task in ("RTE", "MRPC")]
# The recorder: one JSON line per call, [command name, *arguments].
RECORDER = """#!/bin/sh
exec {python} -c 'import json, os, sys; open(os.environ["RECORD"], "a").write(json.dumps(sys.argv[1:]) + "\\n")' \
    "$(basename "$0")" "$@"
"""


def section(heading: str) -> str:
    """The text under the markdown heading ``heading`` (e.g. "### Per task"), up to the next heading."""
    text = DOC.read_text()
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"^#", text[start:], re.M)
    return text[start:start + following.start()] if following else text[start:]


def table(heading: str) -> list[dict[str, str]]:
    """The first table under ``heading``: one dict per row, keyed by the header's cells (backticks dropped)."""
    lines = [line for line in section(heading).splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header = [cell.strip("`") for cell in split[0]]
    return [dict(zip(header, row, strict=True)) for row in split[2:]]


def options(tokens: list[str]) -> Counter:
    """``--option value`` pairs (value None for a flag) of a command line's options, as a multiset."""
    pairs, i = Counter(), 0
    while i < len(tokens):
        assert tokens[i].startswith("--"), f"{tokens[i]!r} is not an option"
        value = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else None
        pairs[tokens[i], value] += 1
        i += 1 if value is None else 2
    return pairs


def assert_same(given: Counter, expected: Counter) -> None:
    assert given == expected, f"not in the table: {sorted(given - expected)}; missing: {sorted(expected - given)}"


def documented(heading: str, values: dict[str, str]) -> Counter:
    """The options of the "Ours" column under ``heading``, with the per-data-set ``values`` filled in."""
    rows = table(heading)
    assert all(row["Why"] for row in rows), f"{heading}: a row without its reason"
    tokens = []
    for row in rows:
        for fragment in re.findall(r"`([^`]*)`", row["Ours"]):
            for name, value in values.items():
                fragment = re.sub(rf"\b{name}\b", value, fragment)
            tokens += shlex.split(fragment)
    expected = options(tokens)
    if not torch.cuda.is_available():
        del expected["--fp16", None]  # the recipes pass it only where CUDA is
    return expected


@pytest.fixture
def recorded(tmp_path):
    """run(script, *args, stub=(commands...), env={...}) -> the recorded calls, [name, *arguments] each."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()

    def run(script, *args, stub=("fairseq-train",), env=None):
        for name in stub:
            (stubs / name).write_text(RECORDER.format(python=shlex.quote(str(VENV_BIN / "python"))))
            (stubs / name).chmod(0o755)
        record = tmp_path / "record.jsonl"
        record.unlink(missing_ok=True)
        environment = {**os.environ, "PATH": f"{stubs}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                       "RECORD": str(record), **(env or {})}
        result = subprocess.run(["bash", str(script), *args], env=environment, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        plugin = str(REPO / "fairseq_defemb")
        return [[argument.replace(plugin, "PLUGIN") for argument in json.loads(line)]
                for line in record.read_text().splitlines()]

    return run


def row(heading: str, **key) -> dict[str, str]:
    (found,) = [r for r in table(heading) if all(r[k] == v for k, v in key.items())]
    return found


# -- each script's command line against its table ------------------------------------------------

@pytest.mark.parametrize("script,heading,plm", [
    ("train_definitionemb_bart_large.sh", "## DefinitionEMB, BART-large", "BART_DIR"),
    ("train_definitionemb_roberta_base.sh", "## DefinitionEMB, RoBERTa-base", "ROBERTA_DIR"),
])
def test_definitionemb_training_passes_the_documented_options(recorded, script, heading, plm):
    (call,) = recorded(REPO / "examples" / script, plm, "DEFS_BIN", "SAVE_DIR", "SEED")
    assert call[:2] == ["fairseq-train", "DEFS_BIN"]
    assert_same(options(call[2:]), documented(heading, {}))


@pytest.mark.parametrize("dataset", DATASETS)
def test_summarization_fine_tuning_passes_the_documented_options(recorded, dataset):
    (call,) = recorded(PAPER / "finetune_summarization.sh", dataset, "DATA_BIN", "MODEL_PT", "SAVE_DIR", "SEED")
    assert call[:2] == ["fairseq-train", "DATA_BIN"]
    assert_same(options(call[2:]), documented("## Fine-tuning BART on summarization", row("### Per data set", DATASET=dataset)))


@pytest.mark.parametrize("dataset", DATASETS)
def test_summaries_and_rouge_pass_the_documented_options(recorded, dataset):
    generate, rouge = recorded(PAPER / "evaluate_summarization.sh", dataset, "CHECKPOINT", "DATA_BIN", "TEST_SOURCE",
                               "TEST_TARGET", "OUT", stub=("python", "defemb-analyze"))
    assert generate[:2] == ["python", str(PAPER / "summarize.py")]
    assert_same(options(generate[2:]), documented("## Summaries", row("### Per data set", DATASET=dataset)))
    assert rouge[:2] == ["defemb-analyze", "rouge"]
    assert_same(options(rouge[2:]), documented("### ROUGE", {}))


@pytest.mark.parametrize("model,task", GLUE)
def test_glue_fine_tuning_passes_the_documented_options(recorded, model, task):
    (call,) = recorded(PAPER / "finetune_glue.sh", model, task, "DATA_BIN", "MODEL_PT", "SAVE_DIR", "SEED")
    assert call[:2] == ["fairseq-train", "DATA_BIN"]
    heading = {"roberta": "### RoBERTa", "bart": "### BART"}[model]
    assert_same(options(call[2:]), documented(heading, row("### Per task", MODEL=model, TASK=task)))


# -- the per-data-set values, and their split over GPUs ------------------------------------------

def settings(function: str, *args: str) -> dict[str, str]:
    script = f"source {shlex.quote(str(PAPER / 'settings.sh'))}; {function} {shlex.join(args)}; set"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if re.match(r"^[A-Z_]+=", line))


def test_settings_are_the_documented_tables():
    for documented_row in table("### Per data set"):
        values = settings("summarization_settings", documented_row["DATASET"])
        assert int(documented_row["TOKENS"]) == 8192 * int(documented_row["UPDATE_FREQ"])
        for name, value in documented_row.items():
            if name not in ("Data set", "DATASET", "UPDATE_FREQ"):
                assert values[name] == value, (documented_row["DATASET"], name)
    for documented_row in table("### Per task"):
        values = settings("glue_settings", documented_row["MODEL"], documented_row["TASK"])
        for name in ("LR", "BATCH", "UPDATES", "WARMUP", "ALPHA", "LOG_INTERVAL"):
            assert values[name] == documented_row[name], (documented_row["MODEL"], documented_row["TASK"], name)


@pytest.mark.parametrize("script,args,gpus,max_tokens,update_freq", [
    ("finetune_summarization.sh", ("cnndm",), 8, "8192", "1"),
    ("finetune_summarization.sh", ("xsum",), 2, "8192", "2"),
    ("finetune_summarization.sh", ("bigpatent",), 2, "4096", "1"),
    ("../train_definitionemb_bart_large.sh", (), 4, "1024", "1"),
])
def test_gpus_keep_the_tokens_per_update(recorded, script, args, gpus, max_tokens, update_freq):
    (call,) = recorded(PAPER / script, *args, "DATA_BIN", "MODEL_PT", "SAVE_DIR", env={"GPUS": str(gpus)})
    given = options(call[2:])
    assert given["--max-tokens", max_tokens] == given["--update-freq", update_freq] == 1
    assert given["--distributed-world-size", str(gpus)] == 1


def test_a_batch_that_does_not_split_over_the_gpus_is_refused(tmp_path):
    result = subprocess.run(["bash", str(PAPER / "finetune_summarization.sh"), "cnndm", "D", "M", "S"],
                            env={**os.environ, "GPUS": "3"}, capture_output=True, text=True)
    assert result.returncode != 0 and "65536 tokens per update do not split evenly over 3 GPUs" in result.stderr


# -- the pipelines, end to end on tiny models ------------------------------------------------------

def run_pipeline(script: str, args: list[str], settings: dict[str, str], cwd) -> str:
    """examples/paper/SCRIPT ARGS with the settings as environment variables, as a user runs it."""
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in settings.items())
    return run_bash(f"{assignments} {shlex.quote(str(PAPER / script))} {shlex.join(args)}", cwd)


@pytest.mark.slow
def test_bart_summarization_pipeline_runs(tmp_path):
    tiny_summarization_dir(tmp_path)
    sizes = ARCH_ARGS["bart"][2][:-2]  # the model's sizes, without the pretraining task's --tokens-per-sample
    stdout = run_pipeline("bart_summarization.sh", ["cnndm"], {
        "PLM": "plm", "RAW": "cnn_dm", "WIKTIONARY": "wiktionary.jsonl", "MANUAL": "manual.tsv", "WORKERS": "1",
        "DEFEMB_TRAIN": "--arch defemb_bart --max-update 2 --warmup-updates 1",
        "FINETUNE": " ".join(["--arch", "bart_base", *sizes, "--max-update", "2", "--update-freq", "1"]),
        "GENERATE": "--min-len 2 --max-len-b 12 --batch-size 3",
        "SURGERY": "--force",  # 2 updates: an undertrained model, whose rows the sanity guard refuses
    }, tmp_path)
    hypotheses = (tmp_path / "cnndm-s1.hypo").read_text().split("\n")[:-1]
    assert len(hypotheses) == 4  # one per test document, the last batch of 1 included
    report = json.loads((tmp_path / "plm.defemb-cnndm-s1" / "surgery.json").read_text())
    assert report["alpha"] == 100
    assert "tok:none" in stdout and "-c 95 -r 1000 -n 2 -a" in stdout
    assert (tmp_path / "checkpoints-cnndm-s1" / "checkpoint_best.pt").is_file()


@pytest.mark.slow
def test_glue_pipeline_runs(tmp_path):
    tiny_glue_dir(tmp_path)
    sizes = ARCH_ARGS["roberta"][2][:-2]
    run_pipeline("glue.sh", ["roberta", "RTE"], {
        "PLM": "plm", "DATA": "RTE-bin", "DEFEMB": "defemb.pt",
        "FINETUNE": " ".join([*sizes, "--max-update", "3", "--batch-size", "8"]),
    }, tmp_path)
    report = json.loads((tmp_path / "plm.defemb-RTE-s1" / "surgery.json").read_text())
    assert report["alpha"] == 5
    assert (tmp_path / "checkpoints-roberta-RTE-s1" / "checkpoint_best.pt").is_file()
