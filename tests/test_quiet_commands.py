"""Commands that do not need fairseq do not import it, no command's --help logs, and no --help
imports torch or fairseq (options are parsed before the library is imported).

Importing fairseq costs seconds of start-up (every model and task registers) and logs
"Please install tensorboardX"; surgery, analysis and the corpus builder only need ids, so they
read dict.txt and the binarized data themselves (fairseq_defemb.data.vocabulary, fairseq_defemb.data.indexed).
"""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from fairseq.data import indexed_dataset

from conftest import REPO, VENV_BIN
from test_corpus_alignment import GPT2, write_gpt2_dict
from test_corpus_build import gpt2_args, manual_tsv
from test_surgery import inputs  # noqa: F401  (the fixture)

COMMANDS = ("defemb-corpus", "defemb-predict", "defemb-surgery", "defemb-analyze", "defemb-convert-hf")
HEAVY = ("torch", "fairseq", "fairseq_cli", "transformers", "numpy")
# Each step runs one command's main in the same fresh interpreter and records the fairseq modules loaded so far
# (fairseq, and the plugin subpackages that register with it).
RUN_STEPS = """
import json, sys

PLUGIN = ("fairseq_defemb.tasks", "fairseq_defemb.models", "fairseq_defemb.criterions")

def fairseq_modules():
    # fairseq itself, and the plugin's registration (which imports it); the library may load
    return sorted(m for m in sys.modules if m.split(".")[0] in ("fairseq", "fairseq_cli") or m.startswith(PLUGIN))

from fairseq_defemb.cli import analyze, convert_hf, corpus, predict, surgery
record = {"import": [0, fairseq_modules()]}
mains = {"surgery": surgery.main, "analyze": analyze.main, "corpus": corpus.main}
for name, argv in json.loads(sys.argv[1]):
    record[name] = [mains[name.split(":")[0]](argv), fairseq_modules()]
print(json.dumps(record))
"""
# The line format of configure_cli_logging and of logging's default handler.
LOG_LINE = re.compile(r"^(\S+ \S+ \| [A-Z]+ \| |(DEBUG|INFO|WARNING|ERROR|CRITICAL):)", re.M)


def test_surgery_analysis_and_corpus_run_without_fairseq(tiny_dir, inputs):
    tmp, d = inputs  # task data (train split) binarized by fairseq's own builder, predictions for a few tokens
    ckpt = tiny_dir / "roberta"
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(tmp / "task" / "test.bin"), dtype=np.uint16)
    for line in ("okapi dugong zebu emu", "the of and"):
        builder.add_item(torch.tensor([d.index(w) for w in line.split()] + [d.eos()]))
    builder.finalize(str(tmp / "task" / "test.idx"))
    steps = [
        ("surgery", ["--checkpoint", str(ckpt / "model.pt"), "--embeddings", str(tmp / "defemb.pt"),
                     "--task-data", str(tmp / "task"), "--alpha", "10", "--out", str(tmp / "surgered")]),
        ("surgery:verify", ["--verify", str(tmp / "surgered"), "--against", str(ckpt)]),
        ("surgery:deldirection", ["--checkpoint", str(ckpt), "--method", "deldirection", "--out", str(tmp / "dd")]),
        ("analyze", ["--checkpoint", str(ckpt / "model.pt"), "--compare", str(tmp / "surgered" / "model.pt"),
                     "--dict", str(ckpt / "dict.txt"), "--out", str(tmp / "report"), "--no-progress"]),
        ("analyze:rare-subset", ["rare-subset", "--data-bin", str(tmp / "task"), "--test-split", "test",
                                 "--train-splits", "train", "--threshold", "50", "--output", str(tmp / "rare.txt")]),
    ]
    if (GPT2 / "encoder.json").is_file():  # make install fetches the GPT-2 BPE files
        vocab = write_gpt2_dict(tmp / "gpt2-dict.txt")
        steps.append(("corpus", gpt2_args(tmp / "corpus", vocab, "--source", "manual,numbers", "--manual-tsv",
                                          str(manual_tsv(tmp / "m.tsv", 20)), "--valid-size", "0.2")))
    result = subprocess.run([sys.executable, "-c", RUN_STEPS, json.dumps(steps)], capture_output=True, text=True,
                            cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(record) == ["import"] + [name for name, _ in steps]
    for name, (code, modules) in record.items():
        assert code == 0 and modules == [], (name, code, modules[:5])
    # the steps did their work (the outputs are checked in the commands' own tests)
    surgered = json.loads((tmp / "surgered" / "surgery.json").read_text())
    assert surgered["num_changed"] > 0 and (tmp / "dd" / "model.pt").is_file() and (tmp / "report" / "report.json").is_file()
    assert (tmp / "rare.txt").read_text() == "0\n"  # okapi ... emu: all in training, all above id 50


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_log_lines(command):
    result = subprocess.run([VENV_BIN / command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: " + command)
    assert result.stderr == "" and not LOG_LINE.search(result.stdout), (result.stderr or result.stdout)[:500]


def console_commands() -> dict[str, str]:
    """name -> "module:function" of every console script setup.py declares."""
    import ast

    setup = ast.parse((REPO / "setup.py").read_text())
    scripts = next(node for node in ast.walk(setup) if isinstance(node, ast.Dict) and any(
        isinstance(k, ast.Constant) and k.value == "console_scripts" for k in node.keys))
    lines = ast.literal_eval(scripts.values[0])
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


@pytest.mark.parametrize("command", sorted(console_commands()))
def test_help_imports_neither_torch_nor_fairseq(command):
    """python -X importtime lists every module an interpreter imports: --help must not pull in the
    heavy ones (torch alone is seconds of start-up on a loaded machine)."""
    module, function = console_commands()[command].split(":")
    argv = ["reconstruction", "--help"] if command == "defemb-analyze" else ["--help"]
    code = f"import sys; from {module} import {function}; sys.exit({function}({argv!r}))"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: "), result.stdout[:300] + result.stderr[-1000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert imported, "no -X importtime output"
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY)
    assert not heavy, f"{command} --help imports {heavy[:8]}"


def test_commands_that_import_fairseq_keep_its_import_chatter_out(tmp_path):
    """defemb-convert-hf (logging at INFO) and defemb-predict (WARNING) set up logging before they
    import fairseq, so its "Please install tensorboardX" line never reaches the user."""
    from test_convert_hf import WORDS, save_tiny_bert

    bert = save_tiny_bert(tmp_path / "bert", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)
    converted = subprocess.run([VENV_BIN / "defemb-convert-hf", "--model-dir", bert, "--out", tmp_path / "fs"],
                               capture_output=True, text=True)
    assert converted.returncode == 0 and (tmp_path / "fs" / "model.pt").is_file(), converted.stderr[-2000:]
    # a missing checkpoint is noticed after fairseq's import: the error is all the user sees
    predicted = subprocess.run([VENV_BIN / "defemb-predict", "--checkpoint", tmp_path / "missing.pt", "--corpus",
                                tmp_path, "--out", tmp_path / "x.pt"], capture_output=True, text=True)
    assert predicted.returncode == 2 and predicted.stdout == ""
    assert predicted.stderr.startswith("defemb-predict: error: --checkpoint") and len(predicted.stderr.splitlines()) == 1
    for result in (converted, predicted):
        assert "tensorboardX" not in result.stdout + result.stderr
