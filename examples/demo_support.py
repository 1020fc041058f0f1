"""What both demos share: running the console commands a user would run, timing and logging
them, and reading fairseq-train's log back into a training curve."""
import argparse
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.recipes import Budget, Recipe, training_options

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
# fairseq-train and -generate on this machine: no GPU, no DataLoader workers, every batch kept
# (fairseq drops a last batch smaller than the multiple), the log the demos parse.
CPU = ["--cpu", "--num-workers", "0", "--required-batch-size-multiple", "1", "--log-format", "simple"]

# glibc hands every large tensor back to the kernel and faults it in again on the next batch;
# with big logits (vocabulary x tokens) that was ~30% of a CPU training step here. Keeping freed
# memory in the process removes it (measured: 1,000 -> 1,300 words/s for the BART demo's model).
FAST_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 34), "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
               "MALLOC_TOP_PAD_": str(1 << 28)}

# fairseq-train's periodic lines, echoed while a long step runs (without the throughput columns).
PROGRESS = re.compile(r"\| (train_inner|valid) \| ")
PROGRESS_FIELDS = re.compile(r"(, | \| )(ppl|wps|ups|wpb|bsz|gnorm|clip|loss_scale|train_wall|gb_free|wall|nmasked)[= ][^,|\s]+")


def _abort_group(leader: int, grace: float = 5.0, apart: float = 0.5) -> None:
    """SIGABRT to a hung step's processes (its leader, then its descendants) in turn, ``apart``
    seconds apart so their stacks (Python's faulthandler writes them to the shared log) do not
    interleave: where it hung. Then SIGKILL to the leader's whole process group."""
    import psutil

    try:
        root = psutil.Process(leader)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    for process in processes:
        try:
            process.send_signal(signal.SIGABRT)
        except psutil.NoSuchProcess:
            continue
        time.sleep(apart)
    time.sleep(grace)
    try:
        os.killpg(leader, signal.SIGKILL)
    except ProcessLookupError:  # all gone already
        pass


class Step:
    """Runs and times the demo's commands, logging each to ``work/logs/NAME.log``."""

    def __init__(self, work: Path, timeout: float | None = None):
        """``timeout``: seconds any one command may run before it is killed and the demo exits
        with its log's tail (None: no limit); a hung step then names itself instead of stalling."""
        self.work, self.timings, self.timeout = work, {}, timeout
        (work / "logs").mkdir(parents=True, exist_ok=True)

    def run(self, name: str, cmd: list, show: int = 6, threads: int | None = None) -> str:
        """Run ``cmd`` (with ``threads`` torch/BLAS threads, default all), echoing fairseq-train's
        progress lines as they come; exit the demo with the log's tail if it fails or runs over the
        step timeout. Returns stdout + stderr, also written to ``logs/NAME.log``."""
        print(f"\n[{name}] $ {shlex.join(str(c) for c in cmd)}", flush=True)
        start = time.perf_counter()
        # a hung Python command prints every thread's stack on the SIGABRT the watchdog sends first
        env = {**os.environ, **FAST_MALLOC, "PYTHONFAULTHANDLER": "1"}
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        log_path = self.work / "logs" / f"{name.replace(' ', '_')}.log"
        with tempfile.TemporaryFile("w+") as stderr:
            # its own process group: a timeout kills the command's workers too
            process = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                                       start_new_session=True)
            watchdog = threading.Timer(self.timeout, _abort_group, (process.pid,)) if self.timeout else None
            if watchdog:
                watchdog.start()
            stdout = []
            try:
                for line in process.stdout:
                    stdout.append(line)
                    if PROGRESS.search(line):
                        print(f"    {name}: {PROGRESS_FIELDS.sub('', line.split(' | ', 2)[-1]).strip()}", flush=True)
                returncode = process.wait()
            finally:
                if watchdog:
                    watchdog.cancel()
            stderr.seek(0)
            log = "".join(stdout) + stderr.read()
        self.timings[name] = round(time.perf_counter() - start, 1)
        log_path.write_text(log)
        if returncode != 0:
            over = self.timeout and self.timings[name] >= self.timeout
            why = f"ran over the {self.timeout:g} s step timeout and was killed" if over else f"failed (exit {returncode})"
            # past the timeout the tail holds the stack dumps of every process in the step
            sys.exit(f"demo: step '{name}' {why}; last lines:\n{log[-(12000 if over else 3000):]}")
        tail = [line for line in "".join(stdout).splitlines() if line.strip() and not PROGRESS.search(line)]
        tail = tail[-show:] if show else []
        print("".join(f"    {line}\n" for line in tail) + f"    ({name}: {self.timings[name]} s)", flush=True)
        return log

    def time(self, name: str, function, *args, **kwargs):
        """Time an in-process step under ``name``."""
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - start, 1)
        return result


def definition_cloze_cmd(definitions: Path, pretrained: Path, save_dir: Path, *, arch: str, recipe: Recipe,
                         budget: Budget, seed: int, extra: list = ()) -> list:
    """``fairseq-train --task definition_cloze`` of ``recipe`` (fairseq_defemb.recipes: its criterion
    and W options, the paper's optimiser) at a demo's CPU ``budget``; ``extra``: the caller's
    validation, checkpoint, logging and W options."""
    return [BIN / "fairseq-train", definitions, "--user-dir", REPO / "fairseq_defemb",
            "--pretrained-checkpoint", pretrained, "--save-dir", save_dir, "--no-epoch-checkpoints",
            *training_options(recipe, budget, arch=arch, seed=seed), *CPU, *extra]


def training_curve(log: str) -> dict[str, list[float]]:
    """Train loss (and the mimic criterion's cosine, when logged) per logged update, and the
    validation loss per validation, from a ``--log-format simple`` fairseq-train log. ``eq5`` and
    ``valid_eq5``: Eq. 5 alone (the criterion's ``mimic``), which the loss is unless a retrieval
    term is added to it."""
    curve = {"update": [], "loss": [], "eq5": [], "cosine": [], "valid_update": [], "valid_loss": [], "valid_eq5": [],
             "valid_cosine": []}
    for line in re.findall(r"\| train_inner \| (.*)", log):
        fields = dict(re.findall(r"(\w+)=([-0-9.e]+)", line))
        curve["update"].append(int(fields["num_updates"]))
        curve["loss"].append(float(fields["loss"]))
        curve["eq5"].append(float(fields.get("mimic", fields["loss"])))
        if "cosine" in fields:
            curve["cosine"].append(float(fields["cosine"]))
    for m in re.finditer(r"\| valid on 'valid' subset \| loss ([0-9.]+) (.*?)num_updates (\d+)", log):
        curve["valid_loss"].append(float(m.group(1)))
        curve["valid_update"].append(int(m.group(3)))
        mimic = re.search(r"\| mimic ([-0-9.]+)", m.group(2))
        curve["valid_eq5"].append(float(mimic.group(1)) if mimic else float(m.group(1)))
        cosine = re.search(r"\| cosine ([-0-9.]+)", m.group(2))
        if cosine:
            curve["valid_cosine"].append(float(cosine.group(1)))
    return curve


def plot_mimic_curve(curve: dict, path: Path, title: str) -> None:
    """The definition_cloze curve: Eq. 5's loss (log scale) and the cosine to the pretrained rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(curve["update"], curve["loss"], label="train loss (Eq. 5)")
    ax.plot(curve["valid_update"], curve["valid_loss"], "o-", label="valid loss")
    ax.set_xlabel("update")
    ax.set_ylabel("mean squared L2 per definition")
    ax.set_yscale("log")  # the first updates fit the scale; later progress is small in absolute terms
    if curve["cosine"]:
        ax2 = ax.twinx()
        ax2.plot(curve["update"], curve["cosine"], color="tab:green", alpha=0.6, label="cosine to pretrained")
        ax2.set_ylabel("cosine")
    fig.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def source_flags(budget: dict) -> list[str]:
    """defemb-corpus's ``--source`` for a demo budget's ``sources`` (None: every embedded source, its default)."""
    return ["--source", budget["sources"]] if budget.get("sources") else []


def sources_said(budget: dict) -> str:
    """The definition sources a demo budget reads, in words."""
    return f"the definition sources {budget['sources']}" if budget.get("sources") else "every embedded definition source"


def first_json(log: str) -> dict:
    """The JSON object a tool printed (its summary line may follow, fairseq's logging may precede)."""
    return json.JSONDecoder().raw_decode(log[log.index("{"):])[0]


def parse_demo_args(description: str, default_out: str, budgets: dict,
                    argv: list[str] | None, extra_train_args: bool = False) -> tuple[argparse.Namespace, dict]:
    """The options the demos and the evaluation take (where to write, which CPU budget, which seed;
    with ``extra_train_args`` also --train-args), parsed; returns them with the chosen budget, and
    quiets the in-process fairseq logging."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=default_out, help="output folder; replaced whole by a new run")
    parser.add_argument("--budget", choices=sorted(budgets), default="full", help="'ci' is the shortened run of the slow test")
    parser.add_argument("--seed", type=int, default=1, help="seed of the data sample, training and DefinitionEMB")
    parser.add_argument("--step-timeout", type=float, default=0,
                        help="kill any one command after this many seconds and stop with its log (default 0: no limit)")
    if extra_train_args:
        parser.add_argument("--train-args", default="",
                            help="extra fairseq-train options, e.g. '--update-embeddings' (the defaults are the paper's)")
    args = parser.parse_args(argv)
    configure_cli_logging(logging.WARNING)
    return args, budgets[args.budget]


# defemb-surgery --method -> the directory (and the name in every table) of its checkpoint
SURGERIES = {"definitionemb": "DefinitionEMB", "deldirection": "DelDirection", "deldirection-centred": "DelDirection-centred",
             "del-zscore": "Del-zscore"}


def run_surgeries(step: Step, work: Path, original: Path, alpha: int, show: int = 6,
                  definition_models: dict[str, Path] | None = None, forced: set[str] = frozenset()) -> dict[str, Path]:
    """``defemb-surgery`` for DefinitionEMB (from each of ``definition_models``' prediction files,
    name -> file, default {"DefinitionEMB": ``work``/defemb.pt}, with the task data in
    ``work``/task-bin) and the baselines (DelDirection as the paper's Eq. 3 and its centred variant,
    Del-zscore), each into ``work``/NAME; returns each method's model.pt. The definition models
    named in ``forced`` pass ``--force``: rows the sanity guard refuses (an undertrained model's,
    which the caller knows it is) are written anyway, the guard's figures kept in surgery.json."""
    definition_models = definition_models or {SURGERIES["definitionemb"]: work / "defemb.pt"}
    runs = [("definitionemb", name, predictions) for name, predictions in definition_models.items()]
    runs += [(method, name, None) for method, name in SURGERIES.items() if method != "definitionemb"]
    checkpoints = {}
    for method, name, predictions in runs:
        extra = ["--embeddings", predictions, "--task-data", work / "task-bin", "--alpha", alpha,
                 *(["--force"] if name in forced else [])] if predictions else []
        step.run(f"surgery {name}", [BIN / "defemb-surgery", "--checkpoint", original / "model.pt", "--dict",
                                     original / "dict.txt", "--method", method, *extra, "--out", work / name], show=show)
        checkpoints[name] = work / name / "model.pt"
    return checkpoints

