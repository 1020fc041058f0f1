"""The README's "From Python" block runs as written: only its settings are replaced.

The settings (the assignments above the block's ``# ---`` line, after its imports) point at a tiny RoBERTa whose
dictionary is the real GPT-2 BPE vocabulary, the real GPT-2 BPE files, a raw-text task file
and a few updates; every line below ``# ---`` is executed unchanged.
"""
import os
import re

import pytest
import torch

from conftest import REPO, VENV_BIN
from test_corpus_alignment import GPT2, write_gpt2_dict
from tiny_models import make_tiny_checkpoint

README = REPO / "README.md"


def readme_python_block() -> tuple[str, str]:
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    settings, _, body = block.partition("# ---\n")
    assert body, "the From Python block lost its '# ---' line that separates settings from the pipeline"
    return settings, body


@pytest.mark.slow
def test_readme_python_block_runs(tmp_path, monkeypatch, capsys):
    settings, body = readme_python_block()
    for name in ("PLM", "ARCH", "GPT2", "TASK", "TRAIN", "CORPUS", "SURGERY"):
        assert re.search(rf"^{name} = ", settings, re.M), f"README setting {name} is gone; update this test"
    plm = tmp_path / "plm"
    plm.mkdir()
    make_tiny_checkpoint(plm, "roberta", dict_path=write_gpt2_dict(tmp_path / "dict.txt"))
    (tmp_path / "task.txt").write_text("The sediment settled at the bottom of the quagga's river in 1999, 1850 and 2004.\n"
                                       "Everlasting zebras graze near the okapi.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    namespace: dict = {}
    exec(compile(settings, str(README), "exec"), namespace)  # the imports, and the settings replaced below
    namespace.update({
        "PLM": "plm", "ARCH": "defemb_roberta", "TASK": ["task.txt"],
        "GPT2": {"gpt2_encoder_json": str(GPT2 / "encoder.json"), "gpt2_vocab_bpe": str(GPT2 / "vocab.bpe")},
        "TRAIN": ["--max-tokens", "512", "--max-update", "3", "--cpu", "--num-workers", "0", "--warmup-updates", "1"],
        "CORPUS": {"sources": ["numbers"], "workers": 2, "valid_size": 20, "max_prompt_tokens": 32, "progress": False},
        "SURGERY": {"force": True},  # 3 updates: an undertrained model, whose rows the sanity guard refuses
    })
    namespace["__name__"] = "__main__"  # the block runs as a script would
    exec(compile(body, str(README), "exec"), namespace)
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
