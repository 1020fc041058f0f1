"""docs/python.md's pipeline block runs as written: only its settings are replaced.

The settings (the assignments above the block's ``# ---`` line, after its imports) point at a tiny RoBERTa whose
dictionary is the real GPT-2 BPE vocabulary, the real GPT-2 BPE files, a raw-text task file
and a few updates; every line below ``# ---`` is executed unchanged.
"""
import os
import re

import pytest
import torch

from conftest import VENV_BIN
from doc_blocks import doc_block
from test_corpus_alignment import GPT2, write_gpt2_dict
from tiny_models import make_tiny_checkpoint


def python_block(name: str) -> tuple[str, str]:
    """A Python block of the docs, split at its ``# ---`` line into settings and body."""
    settings, _, body = doc_block(name).partition("# ---\n")
    assert body, f"the block {name} lost its '# ---' line that separates settings from the rest"
    return settings, body


@pytest.mark.slow
def test_readme_python_block_runs(tmp_path, monkeypatch, capsys):
    settings, body = python_block("python-pipeline")
    for name in ("PLM", "ARCH", "GPT2", "TASK", "TRAIN", "CORPUS", "SURGERY"):
        assert re.search(rf"^{name} = ", settings, re.M), f"docs/python.md's setting {name} is gone; update this test"
    plm = tmp_path / "plm"
    plm.mkdir()
    make_tiny_checkpoint(plm, "roberta", dict_path=write_gpt2_dict(tmp_path / "dict.txt"))
    (tmp_path / "task.txt").write_text("The sediment settled at the bottom of the quagga's river in 1999, 1850 and 2004.\n"
                                       "Everlasting zebras graze near the okapi.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    namespace: dict = {}
    exec(compile(settings, "docs/python.md", "exec"), namespace)  # the imports, and the settings replaced below
    namespace.update({
        "PLM": "plm", "ARCH": "defemb_roberta", "TASK": ["task.txt"],
        "GPT2": {"gpt2_encoder_json": str(GPT2 / "encoder.json"), "gpt2_vocab_bpe": str(GPT2 / "vocab.bpe")},
        "TRAIN": ["--max-tokens", "512", "--max-update", "3", "--cpu", "--num-workers", "0", "--warmup-updates", "1"],
        "CORPUS": {"sources": ["numbers"], "workers": 2, "valid_size": 20, "max_prompt_tokens": 32, "progress": False},
        "SURGERY": {"force": True},  # 3 updates: an undertrained model, whose rows the sanity guard refuses
    })
    namespace["__name__"] = "__main__"  # the block runs as a script would
    exec(compile(body, "docs/python.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert re.search(r"[\d,]+ prompts, \d+\.\d% of the vocabulary defined", out)
    assert namespace["coverage"]["predicted_tokens"] > 0
    surgery = namespace["surgery"]
    assert surgery["num_changed"] > 0 and f"replaced {surgery['num_changed']} rows" in out
    after = torch.load("plm.defemb/model.pt", map_location="cpu", weights_only=False)["model"]
    predicted = torch.load("defemb.pt", map_location="cpu", weights_only=True)
    row = {int(t): i for i, t in enumerate(predicted["token_ids"])}
    changed = surgery["changed_ids"][0]
    key = "encoder.sentence_encoder.embed_tokens.weight"
    assert torch.equal(after[key][changed], predicted["embeddings"][row[changed]].to(after[key].dtype))
    assert set(namespace["report"]["matrices"]) == {"plm", "DefinitionEMB"}
