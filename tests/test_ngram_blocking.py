"""fairseq's --no-repeat-ngram-size made to work by the plugin (github.com/facebookresearch/fairseq/issues/4709, /5206)."""
import importlib.util
import math
import types

import pytest
import torch
from fairseq import ngram_repeat_block

from fairseq_defemb import ngram_blocking


class ReferenceBlocker(torch.nn.Module):
    """The n-gram blocker written the obvious way: per row, every n-gram of the tokens generated
    so far whose first n - 1 tokens are the last n - 1 generated bans its last token."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, tokens, lprobs, bsz, beam_size, step):
        n = self.n
        for row in range(tokens.size(0)):
            seq = tokens[row, : step + 1].tolist()
            last = seq[len(seq) - (n - 1):] if n > 1 else []
            for i in range(len(seq) - n + 1):
                if seq[i:i + n - 1] == last:
                    lprobs[row, seq[i + n - 1]] = -math.inf
        return lprobs


def pristine_fairseq_fallback():
    """fairseq's own ``_no_repeat_ngram``, read afresh from its source file (the plugin replaced
    the one on the imported class)."""
    spec = importlib.util.spec_from_file_location("pristine_ngram_repeat_block", ngram_repeat_block.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NGramRepeatBlock._no_repeat_ngram


def test_installed_fairseq_is_the_affected_one_and_the_fix_is_in_place():
    """When this fails on the first assert, fairseq's fallback works: delete fairseq_defemb/ngram_blocking.py."""
    assert ngram_blocking.fallback_is_buggy(pristine_fairseq_fallback())
    assert not ngram_repeat_block.EXTENSION_BUILT
    assert ngram_repeat_block.NGramRepeatBlock._no_repeat_ngram is ngram_blocking._no_repeat_ngram
    assert not ngram_blocking.fallback_is_buggy(ngram_repeat_block.NGramRepeatBlock._no_repeat_ngram)
    assert ngram_blocking.apply()  # idempotent


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bans_exactly_what_the_reference_bans(n):
    """Random padded buffers with a small alphabet (many repeats), every step."""
    generator = torch.Generator().manual_seed(n)
    rows, length, vocab = 6, 14, 12
    tokens = torch.randint(4, 8, (rows, length + 2), generator=generator)
    tokens[:, 0] = 2
    block = ngram_repeat_block.NGramRepeatBlock(n, use_extension=False)
    banned_somewhere = False
    for step in range(length):
        padded = tokens.clone()
        padded[:, step + 1:] = 1
        ours = block(padded, torch.zeros(rows, vocab), rows // 2, 2, step)
        reference = ReferenceBlocker(n)(padded, torch.zeros(rows, vocab), rows // 2, 2, step)
        assert torch.equal(torch.isinf(ours), torch.isinf(reference)), step
        banned_somewhere |= bool(torch.isinf(ours).any())
    assert banned_somewhere


def test_torchscript_still_compiles_the_block():
    scripted = torch.jit.script(ngram_repeat_block.NGramRepeatBlock(2, use_extension=False))
    lprobs = scripted(torch.tensor([[2, 7, 8, 7, 1, 1]]), torch.zeros(1, 10), 1, 1, 3)
    assert torch.isinf(lprobs[0, 8]) and torch.isinf(lprobs).sum() == 1


def repeated_ngrams(tokens: list[int], n: int) -> int:
    ngrams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(ngrams) - len(set(ngrams))


@pytest.fixture(scope="module")
def tiny_bart(tiny_dir):
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(tiny_dir / "bart" / "model.pt")])
    d = task.source_dictionary
    sentences = ["the cat is a small animal", "a yak is a cow with cloth", "the sun is the star of the sea"]
    rows = [torch.tensor([d.bos()] + [d.index(w) for w in s.split()] + [d.eos()]) for s in sentences]
    src = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=d.pad())
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([len(r) for r in rows])}}
    return models[0].eval(), task.target_dictionary, sample


def generate(tiny_bart, n: int, blocker=None):
    """Every beam's hypothesis (tokens with the leading </s> fairseq starts from, and scores)."""
    from fairseq.sequence_generator import SequenceGenerator

    model, dictionary, sample = tiny_bart
    generator = SequenceGenerator([model], dictionary, beam_size=4, max_len_a=0, max_len_b=24, min_len=20,
                                  no_repeat_ngram_size=n)
    if blocker is not None:
        generator.repeat_ngram_blocker = blocker
    with torch.no_grad():
        hypotheses = generator.generate([model], sample)
    return [[([dictionary.eos()] + h["tokens"].tolist(), h["score"].item()) for h in beams] for beams in hypotheses]


@pytest.mark.parametrize("n", [2, 3])
def test_beam_search_blocks_repeats_as_the_reference_does(tiny_bart, n):
    unblocked = generate(tiny_bart, 0)
    assert sum(repeated_ngrams(tokens, n) for beams in unblocked for tokens, _ in beams) > 0
    # fairseq's own fallback changes nothing: the bug the plugin fixes.
    stock = ngram_repeat_block.NGramRepeatBlock(n, use_extension=False)
    stock._no_repeat_ngram = types.MethodType(pristine_fairseq_fallback(), stock)
    assert generate(tiny_bart, n, stock) == unblocked
    blocked = generate(tiny_bart, n)
    assert all(len(beams) == 4 for beams in blocked)
    for beams in blocked:
        for tokens, _ in beams:
            assert len(tokens) >= 21 and repeated_ngrams(tokens, n) == 0, tokens
    reference = generate(tiny_bart, n, ReferenceBlocker(n))
    assert [[t for t, _ in beams] for beams in blocked] == [[t for t, _ in beams] for beams in reference]
    for ours, theirs in zip(blocked, reference):
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=1e-6)


@pytest.mark.slow
def test_fairseq_generate_with_the_plugin_blocks_trigrams(tiny_dir, tmp_path):
    """The BART recipe's generate step (docs/fairseq-recipes.md; stock fairseq-generate --task translation, beam 4,
    --no-repeat-ngram-size 3) on a tiny BART: no hypothesis repeats a trigram, and the log says why."""
    import subprocess

    from conftest import REPO, VENV_BIN

    lines = ["the cat is a small animal", "a yak is a cow with cloth", "the sun is the star of the sea"]
    for side in ("source", "target"):
        (tmp_path / f"test.{side}").write_text("\n".join(lines) + "\n")
    dict_txt = tiny_dir / "bart" / "dict.txt"
    subprocess.run([str(VENV_BIN / "fairseq-preprocess"), "--source-lang", "source", "--target-lang", "target",
                    "--testpref", str(tmp_path / "test"), "--destdir", str(tmp_path / "bin"),
                    "--srcdict", str(dict_txt), "--tgtdict", str(dict_txt), "--workers", "1"],
                   check=True, capture_output=True)

    def hypotheses(*extra):
        gen = subprocess.run([
            str(VENV_BIN / "fairseq-generate"), str(tmp_path / "bin"), "--user-dir", str(REPO / "fairseq_defemb"),
            "--path", str(tiny_dir / "bart" / "model.pt"), "--task", "translation", "--source-lang", "source",
            "--target-lang", "target", "--gen-subset", "test", "--beam", "4", "--min-len", "20", "--max-len-b", "24",
            "--cpu", "--batch-size", "3", "--required-batch-size-multiple", "1", "--num-workers", "0", *extra],
            capture_output=True, text=True)
        assert gen.returncode == 0, gen.stderr[-3000:]
        found = [line.split("\t")[2].split() for line in gen.stdout.splitlines() if line.startswith("H-")]
        assert len(found) == len(lines)
        return found, gen.stderr

    unblocked, _ = hypotheses()
    assert sum(repeated_ngrams(h, 3) for h in unblocked) > 0
    blocked, log = hypotheses("--no-repeat-ngram-size", "3")
    assert all(repeated_ngrams(h, 3) == 0 for h in blocked), blocked
    assert "--no-repeat-ngram-size 3: fairseq 0.12.3's fallback" in log
