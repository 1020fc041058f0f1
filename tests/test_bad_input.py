"""Bad input, end to end: the rows of docs/BAD_INPUT.md that no other test covers.

Every failing case exits 2 with a message naming the file (and line, where there is one), and
leaves neither an output nor a temporary behind. Disk full is simulated with RLIMIT_FSIZE in the
child (writes then fail with EFBIG, as they fail with ENOSPC on a full disk).
"""
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import VENV_BIN
from fairseq_defemb.cli.analyze import main as analyze_main
from fairseq_defemb.cli.bpe_encode import main as bpe_main
from fairseq_defemb.cli.corpus import main as corpus_main
from fairseq_defemb.cli.predict import main as predict_main
from fairseq_defemb.cli.surgery import main as surgery_main
from fairseq_defemb.convert.fairseq_checkpoint import save_model_checkpoint
from test_add_tokens import encoder_dir  # noqa: F401 - a fixture: encoder.json with added words, added_tokens.json
from test_convert_hf import WORDS as BERT_WORDS, save_tiny_bert
from test_corpus_alignment import GPT2, MINILM_VOCAB, write_wordpiece_dict
from test_definition_cloze import build_with_cfg


@pytest.fixture(scope="module")
def definition_checkpoint(tiny_dir, tmp_path_factory) -> Path:
    _, model, _, cfg = build_with_cfg(tiny_dir, "roberta")
    return save_model_checkpoint(model, cfg, tmp_path_factory.mktemp("defemb") / "checkpoint_best.pt")


def nothing_left(directory: Path, before: set) -> None:
    assert set(directory.iterdir()) == before, sorted(p.name for p in set(directory.iterdir()) - before)


def fails_in_process(main, argv, directory: Path, capsys, *needles) -> str:
    before = set(directory.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    nothing_left(directory, before)
    return err


def truncated(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


# -- truncated and empty checkpoints ------------------------------------------------------------

@pytest.mark.parametrize("cut", ["truncated", "empty"])
def test_unreadable_checkpoints_are_named(tiny_dir, definition_checkpoint, tmp_path, capsys, cut):
    def broken(source: Path, name: str) -> Path:
        if cut == "truncated":
            return truncated(source, tmp_path / name)
        (tmp_path / name).write_bytes(b"")
        return tmp_path / name

    plm = broken(tiny_dir / "bart" / "model.pt", "model.pt")
    fails_in_process(surgery_main, ["--checkpoint", str(plm), "--dict", str(tiny_dir / "bart" / "dict.txt"),
                                    "--method", "deldirection", "--out", str(tmp_path / "out")],
                     tmp_path, capsys, f"{plm}: cannot be read as a torch checkpoint", "truncated or not a checkpoint")
    fails_in_process(analyze_main, ["--checkpoint", str(plm), "--dict", str(tiny_dir / "bart" / "dict.txt"),
                                    "--out", str(tmp_path / "analysis"), "--no-progress"],
                     tmp_path, capsys, f"{plm}: cannot be read as a torch checkpoint")
    ckpt = broken(definition_checkpoint, "checkpoint_best.pt")
    fails_in_process(predict_main, ["--checkpoint", str(ckpt), "--corpus", str(tiny_dir / "corpus"), "--device", "cpu",
                                    "--out", str(tmp_path / "defemb.pt")],
                     tmp_path, capsys, f"--checkpoint {ckpt}: cannot be read as a torch checkpoint")


# -- bad UTF-8 -----------------------------------------------------------------------------------

def test_dict_txt_with_bad_utf8_names_the_line(tiny_dir, tmp_path, capsys):
    (tmp_path / "plm").mkdir()
    shutil.copyfile(tiny_dir / "bart" / "model.pt", tmp_path / "plm" / "model.pt")
    lines = (tiny_dir / "bart" / "dict.txt").read_bytes().splitlines(keepends=True)
    lines[2] = b"c\xffat 7\n"
    (tmp_path / "plm" / "dict.txt").write_bytes(b"".join(lines))
    fails_in_process(surgery_main, ["--checkpoint", str(tmp_path / "plm"), "--method", "deldirection",
                                    "--out", str(tmp_path / "out")],
                     tmp_path, capsys, f"{tmp_path / 'plm' / 'dict.txt'}:3: not UTF-8")
    fails_in_process(corpus_main, ["--vocab", str(tmp_path / "plm" / "dict.txt"), "--bpe", "wordpiece",
                                   "--wordpiece-vocab", str(MINILM_VOCAB), "--source", "numbers", "--no-progress",
                                   "--out", str(tmp_path / "defs")],
                     tmp_path, capsys, f"--vocab {tmp_path / 'plm' / 'dict.txt'}:3: not UTF-8")


def test_definition_lines_with_bad_utf8_are_skipped_and_counted(tmp_path, capsys):
    vocab = write_wordpiece_dict(tmp_path / "dict.txt")
    tsv = tmp_path / "manual.tsv"
    tsv.write_bytes(b"".join(f"Word{i}x\tn.\tthe {i}th word of a small list\n".encode() for i in range(20))
                    + b"Bad\xffword\tn.\ta \xfe line\n")
    assert corpus_main(["--vocab", str(vocab), "--bpe", "wordpiece", "--wordpiece-vocab", str(MINILM_VOCAB), "--lowercase",
                        "--source", "manual", "--manual-tsv", str(tsv), "--valid-size", "0", "--no-progress",
                        "--out", str(tmp_path / "defs")]) == 0
    out = capsys.readouterr().out
    assert "20 prompts built" in out and "invalid UTF-8: 1" in out, out


# -- empty files ---------------------------------------------------------------------------------

def test_empty_definition_file(tmp_path, capsys):
    vocab = write_wordpiece_dict(tmp_path / "dict.txt")
    (tmp_path / "empty.tsv").write_text("")
    fails_in_process(corpus_main, ["--vocab", str(vocab), "--bpe", "wordpiece", "--wordpiece-vocab", str(MINILM_VOCAB),
                                   "--source", "manual", "--manual-tsv", str(tmp_path / "empty.tsv"), "--no-progress",
                                   "--out", str(tmp_path / "defs")],
                     tmp_path, capsys, "no prompt could be built")


# -- disk full -----------------------------------------------------------------------------------

TINY_BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]

def run_with_file_limit(argv: list[str], limit: int, cwd: Path) -> subprocess.CompletedProcess:
    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(argv, capture_output=True, text=True, preexec_fn=small_disk, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_disk_full_exits_2_and_leaves_nothing(tiny_dir, definition_checkpoint, tmp_path):
    (tmp_path / "inputs").mkdir()
    vocab = write_wordpiece_dict(tmp_path / "inputs" / "dict.txt")
    work = tmp_path / "work"
    work.mkdir()
    commands = {
        "defemb-surgery": ["--checkpoint", str(tiny_dir / "bart" / "model.pt"), "--method", "deldirection", "--out", "out"],
        "defemb-predict": ["--checkpoint", str(definition_checkpoint), "--corpus", str(tiny_dir / "corpus"),
                           "--device", "cpu", "--no-progress", "--out", "defemb.pt"],
        "defemb-corpus": ["--vocab", str(vocab), "--bpe", "wordpiece", "--wordpiece-vocab", str(MINILM_VOCAB),
                          "--source", "numbers", "--no-progress", "--out", "defs"],
        "defemb-analyze": ["--checkpoint", str(tiny_dir / "roberta" / "model.pt"), "--dict", str(tiny_dir / "roberta" / "dict.txt"),
                           "--no-progress", "--out", "analysis"],
        "defemb-convert-hf": ["--model-dir", str(save_tiny_bert(tmp_path / "inputs" / "bert", TINY_BERT_VOCAB)),
                              "--out", "converted"],
        "defemb-fit": ["--pretrained-checkpoint", str(tiny_dir / "roberta" / "model.pt"), "--corpus", str(tiny_dir / "corpus"),
                       "--samples", "10", "--lambda", "1", "--no-progress", "--out", "fit.pt"],
    }
    for command, argv in commands.items():
        # 1 kB: below every output's size (the predictions file is the smallest, ~1.4 kB)
        result = run_with_file_limit([str(VENV_BIN / command), *argv], 1000, work)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert f"{command}: error:" in result.stderr and ("File too large" in result.stderr
                                                          or "could not be written" in result.stderr), result.stderr
        assert list(work.iterdir()) == [], (command, sorted(p.name for p in work.iterdir()))
        if command == "defemb-analyze":  # matplotlib's own write names no file: the tool names it
            assert "analysis/projection.png: could not be written" in result.stderr, result.stderr


def test_truncated_corpus_names_the_file(tiny_dir, definition_checkpoint, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_dir / "corpus", corpus)
    truncated(tiny_dir / "corpus" / "train.prompt.bin", corpus / "train.prompt.bin")
    fails_in_process(predict_main, ["--checkpoint", str(definition_checkpoint), "--corpus", str(corpus),
                                    "--device", "cpu", "--out", str(tmp_path / "defemb.pt")],
                     tmp_path, capsys, f"{corpus / 'train.prompt.bin'}: missing or shorter than its index says")


# -- defemb-bpe-encode ---------------------------------------------------------------------------

def bpe_encode_argv(encoder_dir: Path, *options) -> list[str]:
    return ["--encoder-json", str(encoder_dir / "encoder.json"), "--vocab-bpe", str(GPT2 / "vocab.bpe"), *map(str, options)]


def test_bpe_encode_bad_inputs_are_named(encoder_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("I had covid.\n")
    out = tmp_path / "out"
    out.mkdir()
    bpe = out / "train.bpe"
    fails_in_process(bpe_main, bpe_encode_argv(encoder_dir, "--inputs", tmp_path / "in.txt", tmp_path / "in.txt",
                                               "--outputs", bpe), out, capsys,
                     "--inputs and --outputs need the same number of files")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(encoder_dir / "encoder.json", other / "encoder.json")
    fails_in_process(bpe_main, bpe_encode_argv(other, "--inputs", tmp_path / "in.txt", "--outputs", bpe), out, capsys,
                     f"{other / 'added_tokens.json'}: not found (defemb-add-tokens writes added_tokens.json")
    (other / "added_tokens.json").write_text('{"words": []}')
    fails_in_process(bpe_main, bpe_encode_argv(other, "--inputs", tmp_path / "in.txt", "--outputs", bpe), out, capsys,
                     f"{other / 'added_tokens.json'}: not an added_tokens.json of defemb-add-tokens")
    shutil.copyfile(GPT2 / "encoder.json", other / "encoder.json")  # the stock one: no id for the new words
    shutil.copyfile(encoder_dir / "added_tokens.json", other / "added_tokens.json")
    fails_in_process(bpe_main, bpe_encode_argv(other, "--inputs", tmp_path / "in.txt", "--outputs", bpe), out, capsys,
                     f"{other / 'encoder.json'}: added form ' covid' is not id")
    fails_in_process(bpe_main, ["--encoder-json", str(encoder_dir / "encoder.json"), "--vocab-bpe",
                                str(tmp_path / "missing.bpe"), "--inputs", str(tmp_path / "in.txt"), "--outputs", str(bpe)],
                     out, capsys, f"No such file or directory: '{tmp_path / 'missing.bpe'}'")


@pytest.mark.parametrize("case", ["missing input", "input not UTF-8", "--decode of a line that is no ids",
                                  "--decode of an id encoder.json lacks", "added_tokens.json not JSON"])
def test_bpe_encode_input_errors(encoder_dir, tmp_path, capsys, case):
    """Exit 2 naming the file (and the line, for a line of the input), nothing written, the inputs untouched."""
    encoder, text, options = encoder_dir, tmp_path / "in.txt", []
    if case == "input not UTF-8":
        text.write_bytes(b"I had covid.\nbad \xff byte\n")
    elif case.startswith("--decode"):
        text.write_text("40 550 x\n" if case.endswith("no ids") else "40 550 99999999\n")
        options = ["--decode"]
    elif case == "added_tokens.json not JSON":
        text.write_text("I had covid.\n")
        encoder = tmp_path / "encoder"
        encoder.mkdir()
        shutil.copyfile(encoder_dir / "encoder.json", encoder / "encoder.json")
        (encoder / "added_tokens.json").write_text("{not json")
    named = encoder / "added_tokens.json" if case == "added_tokens.json not JSON" else text
    out = tmp_path / "out"
    out.mkdir()
    inputs = sorted(tmp_path.rglob("*"))
    before = {p: p.read_bytes() for p in inputs if p.is_file()}
    code = bpe_main(bpe_encode_argv(encoder, *options, "--inputs", text, "--outputs", out / "train.bpe"))
    err_text = capsys.readouterr().err
    assert list(out.iterdir()) == [] and {p: p.read_bytes() for p in before} == before
    assert code == 2 and err_text.startswith("defemb-bpe-encode: error:") and str(named) in err_text, err_text
    if case != "added_tokens.json not JSON" and case != "missing input":
        assert f"{text}:{2 if case == 'input not UTF-8' else 1}:" in err_text, err_text


@pytest.mark.slow
def test_bpe_encode_disk_full_and_a_dead_worker_leave_nothing(encoder_dir, tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("I had covid and the quagga sat on the mat in 1999.\n" * 100_000)  # seconds of work for 2 workers
    work = tmp_path / "work"
    work.mkdir()
    argv = [str(VENV_BIN / "defemb-bpe-encode"), *bpe_encode_argv(encoder_dir, "--inputs", text, "--outputs", "train.bpe",
                                                                  "--workers", "2")]
    process = subprocess.Popen(argv, cwd=work, stderr=subprocess.PIPE, text=True)
    tool = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    # the workers are the forkserver's children: the command's grandchildren
    while not (workers := [w for helper in tool.children() for w in helper.children()]):
        assert process.poll() is None and time.monotonic() < deadline, "no worker process appeared"
        time.sleep(0.05)
    workers[0].kill()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2 and "defemb-bpe-encode: error: a worker process died" in err, err[-2000:]
    assert list(work.iterdir()) == []
    full = run_with_file_limit(argv, 1000, work)
    assert list(work.iterdir()) == [], sorted(p.name for p in work.iterdir())
    assert full.returncode == 2 and "train.bpe" in full.stderr, full.stderr[-2000:]
