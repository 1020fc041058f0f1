"""The benchmark harness: interleaved timing, ratios and growth exponents, subprocess helpers, and the
fixtures every stage builds on (the GPT-2 dictionary, the GCIDE corpus, subsets of it, random-weight
RoBERTa and BART checkpoints built by fairseq's own task builders, DefinitionEMB models built as
fairseq-train builds them). Stage modules: bench_corpus, bench_training, bench_predict, and the
bench_isotropy / bench_surgery scripts; run.py runs them and report.py writes the README section.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
GPT2 = REPO / ".cache" / "gpt2"

import fairseq_defemb  # noqa: E402

fairseq_defemb.register()

STAGE_NAMES = ("corpus", "training", "predict", "isotropy", "surgery", "scale", "gpu")  # the order of a full run
WIDTH, FFN = 384, 1536
ROBERTA_LAYERS, BART_LAYERS = 6, 3


def model_dims(family: str, layers: int, width: int, ffn: int, heads: int, positions: int = 512) -> list[str]:
    """fairseq-train options giving a RoBERTa (encoder) or BART (encoder + decoder) this shape."""
    if family == "roberta":
        return ["--encoder-layers", str(layers), "--encoder-embed-dim", str(width), "--encoder-ffn-embed-dim", str(ffn),
                "--encoder-attention-heads", str(heads), "--max-positions", str(positions),
                "--tokens-per-sample", str(positions)]
    return [option for side in ("encoder", "decoder") for option in (
        f"--{side}-layers", str(layers), f"--{side}-embed-dim", str(width), f"--{side}-ffn-embed-dim", str(ffn),
        f"--{side}-attention-heads", str(heads))] + [
        "--max-source-positions", str(positions), "--max-target-positions", str(positions),
        "--tokens-per-sample", str(positions)]


ROBERTA_DIMS = model_dims("roberta", ROBERTA_LAYERS, WIDTH, FFN, 12)
BART_DIMS = model_dims("bart", BART_LAYERS, WIDTH, FFN, 12)
TRAIN_MAX_TOKENS = 4096  # the paper's batch (Table 12)
PREDICT_MAX_TOKENS = 8192  # defemb-predict's default
OPTIM = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "1e-4", "--max-tokens", str(TRAIN_MAX_TOKENS),
         "--required-batch-size-multiple", "1", "--seed", "1"]


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of every function per round, run in turn (A B C A B C ...)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of numerator / denominator: a load change between rounds cancels."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) on log(size): 1 = linear, 0 = fixed cost."""
    x, y = np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(seconds, dtype=float))
    return float(np.polyfit(x, y, 1)[0])


def run(cmd: list, timeout: float | None = None) -> str:
    """Run a command; its standard output (its standard error only in the error raised on failure).
    With ``timeout`` (seconds), the command and every process it started are killed when it runs
    longer, and TimeoutError is raised."""
    # Its own session: on a timeout the whole group goes (DataLoader workers, a tool's worker pool).
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=timeout is not None)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"{cmd[0]} {' '.join(map(str, cmd[1:4]))} ... exceeded its {timeout:.0f} s limit") from None
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed:\n{err[-2000:]}")
    return out


def last_json(text: str) -> dict:
    """The last JSON object a helper script printed at the start of a line (it may log around it)."""
    decoder = json.JSONDecoder()
    starts = [i for i in range(len(text)) if text[i] == "{" and (i == 0 or text[i - 1] == "\n")]
    for start in reversed(starts):
        try:
            return decoder.raw_decode(text, start)[0]
        except json.JSONDecodeError:
            continue
    raise ValueError(f"no JSON object in the output: {text[-500:]!r}")


# -- fixtures --------------------------------------------------------------------

class Fixtures:
    def __init__(self, root: Path, quick: bool):
        self.root, self.quick = root, quick
        self._cache = {}

    def once(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def gpt2_dict(self) -> Path:
        def build():
            enc = json.loads((GPT2 / "encoder.json").read_text())
            path = self.root / "gpt2" / "dict.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{i} {len(enc) - i}\n" for i in range(len(enc))))
            return path
        return self.once("dict", build)

    def corpus_command(self, out: Path, workers: int, extra=()) -> list:
        return [BIN / "defemb-corpus", "--source", "gcide,numbers", "--vocab", self.gpt2_dict, "--bpe", "gpt2",
                "--gpt2-encoder-json", GPT2 / "encoder.json", "--gpt2-vocab-bpe", GPT2 / "vocab.bpe",
                "--out", out, "--workers", workers, "--no-progress", "--overwrite", *extra]

    @property
    def full_corpus(self) -> Path:
        """The whole GCIDE corpus for the GPT-2 vocabulary (the corpus stage builds it first)."""
        def build():
            out = self.root / "gcide-gpt2"
            log("building the full GCIDE corpus (GPT-2 BPE, 2 workers) ...")
            run(self.corpus_command(out, 2))
            return out
        return self.once("full_corpus", build)

    def subset(self, prompts: int) -> Path:
        """A corpus of ``prompts`` train prompts drawn (seed 0) from the full corpus."""
        def build():
            from fairseq_defemb.data.corpus_format import CorpusWriter, load_split, write_metadata

            src = load_split(self.full_corpus, "train")
            order = np.random.default_rng(0).permutation(len(src))[:prompts]
            out = self.root / f"defs-{prompts}"
            out.mkdir()
            (out / "dict.txt").write_bytes((self.full_corpus / "dict.txt").read_bytes())
            vocab = len(self.dictionary)
            for split, rows in (("train", order), ("valid", order[:8])):
                writer = CorpusWriter(out, split, vocab)
                for i in rows:
                    writer.add(src.prompts[int(i)].numpy(), [tuple(s) for s in src.spans_of(int(i)).tolist()])
                writer.finalize()
            write_metadata(out, out / "dict.txt", {"train": len(order), "valid": 8}, source="benchmarks subset")
            return out
        return self.once(("subset", prompts), build)

    @property
    def dictionary(self):
        from fairseq_defemb.data.vocabulary import load_model_dictionary

        return self.once("dictionary", lambda: load_model_dictionary(self.full_corpus / "dict.txt"))

    def pretrained(self, family: str, corpus: Path):
        """(stock task, stock model, cfg, checkpoint): random weights, stock fairseq builder.

        RoBERTa's data dir also holds ``corpus``'s prompts as a binarized LM dataset, each
        prompt (without <s>: masked_lm prepends it) its own document, separated as
        fairseq-preprocess writes an empty line (one ``</s>``): ``--sample-break-mode
        complete_doc`` then makes one sample of each prompt, so the stock ``masked_lm`` task
        reads exactly the prompts ``definition_cloze`` reads, index for index."""
        from fairseq.data import indexed_dataset

        from fairseq_defemb.data.corpus_format import load_split
        from fairseq_defemb.convert.fairseq_checkpoint import save_model_checkpoint

        def build():
            out = self.root / f"{family}-{corpus.name}"
            out.mkdir()
            (out / "dict.txt").write_bytes(self.gpt2_dict.read_bytes())
            prompts = load_split(corpus, "train").prompts
            builder = indexed_dataset.MMapIndexedDatasetBuilder(str(out / "train.bin"), dtype=np.uint16)
            separator = torch.tensor([self.dictionary.eos()])
            for i in range(len(prompts)):
                builder.add_item(prompts[i][1:].long())
                builder.add_item(separator)
            builder.finalize(str(out / "train.idx"))
            if family == "roberta":
                task, model, cfg = build_pretrained("roberta", out, "roberta_base", ROBERTA_DIMS)
                task.load_dataset("train")
            else:
                task, model, cfg = build_pretrained("bart", out, "bart_base", BART_DIMS)
            ckpt = save_model_checkpoint(model, cfg, out / "model.pt")
            return task, model, cfg, ckpt
        return self.once(("pretrained", family, corpus), build)

    def definition_model(self, family: str, corpus: Path, extra=()):
        """(task, model, criterion, cfg) exactly as fairseq-train builds them from its options."""
        return definition_model(family, corpus, self.pretrained(family, corpus)[3], extra)


# Stock pretraining task and criterion options of each family (fairseq's own builders).
PRETRAINING = {"roberta": ("masked_lm", ["--criterion", "masked_lm", "--sample-break-mode", "complete_doc"]),
               "bart": ("denoising", ["--criterion", "cross_entropy"])}


def build_pretrained(family: str, data_dir: Path, arch: str, dims: list[str]) -> tuple:
    """(task, model, cfg): a random-weight RoBERTa or BART of fairseq ``arch`` with ``dims``
    (``model_dims``), built by fairseq's own pretraining task over ``data_dir``'s dict.txt (seed 0)."""
    from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model

    task, options = PRETRAINING[family]
    torch.manual_seed(0)
    return build_pretraining_model(data_dir, task, arch, [*dims, *options, *OPTIM])


def definition_model(family: str, corpus: Path, checkpoint: Path, extra=(), cpu: bool = True) -> tuple:
    """(task, model, criterion, cfg) exactly as fairseq-train builds them from its options, starting
    from the pretrained ``checkpoint``; ``cpu=False`` lets fairseq's Trainer place them on the GPU."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(corpus), "--task", "definition_cloze", "--criterion", "mimic_mse", "--arch", f"defemb_{family}",
        "--pretrained-checkpoint", str(checkpoint), *(["--cpu"] if cpu else []), *OPTIM,
        # the step is measured, not the start: no least-squares read of the corpus before it
        "--projection-init", "random", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    task.load_dataset("train")
    return task, model, task.build_criterion(cfg.criterion), cfg


def cpu_sgemm_flops() -> float:
    """What this CPU's float32 matmul reaches at best (1,024^3, the best of 10 runs: the
    machine's rate, not its load), for comparison with the models' FLOP/s."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    times = []
    for _ in range(10):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        times.append(time.perf_counter() - start)
    return 4 * 2 * 1024 ** 3 / min(times)
