"""A non-editable install works outside the source tree: every console command answers --help;
and the install is the pinned set of requirements.lock.

``make install`` installs the project editable; users install it with ``pip install``. This
builds a real wheel install into a temporary target and runs each console entry point from
there, in another directory, with nothing of the source tree on the path.
"""
import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

IGNORED = shutil.ignore_patterns(".git", ".venv", ".cache", "build", "*.egg-info", "__pycache__", "demo-*out*",
                                 "eval-out*", ".hypothesis")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    source, target = root / "source", root / "target"
    shutil.copytree(REPO, source, ignore=IGNORED)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True, capture_output=True, timeout=600)
    shutil.rmtree(source)  # nothing of a source tree is left to import from
    return target


def entry_points(target) -> list[str]:
    (info,) = target.glob("fairseq_defemb-*.dist-info")
    parser = configparser.ConfigParser()
    parser.read(info / "entry_points.txt")
    return sorted(parser["console_scripts"])


@pytest.mark.slow
def test_every_console_command_answers_help_outside_the_source_tree(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import preprocess, fairseq_defemb; print(preprocess.__file__, fairseq_defemb.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(installed)) for path in where), where
    commands = entry_points(installed)
    assert {"defemb-corpus", "defemb-predict", "defemb-surgery", "defemb-analyze", "defemb-convert-hf"} <= set(commands)
    for command in commands:
        result = subprocess.run([str(installed / "bin" / command), "--help"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command} --help: {result.stderr[-2000:]}"
        assert result.stdout.startswith("usage:"), f"{command} --help printed before its usage: {result.stdout[:300]}"


def tiny_train(user_dir: str, tiny_dir, save_dir) -> list[str]:
    """A two-update definition_cloze run (the module form of fairseq-train, so PYTHONPATH decides
    which fairseq and which plugin are imported)."""
    return [sys.executable, "-m", "fairseq_cli.train", str(tiny_dir / "corpus"), "--user-dir", user_dir,
            "--task", "definition_cloze", "--criterion", "mimic_mse", "--arch", "defemb_roberta",
            "--pretrained-checkpoint", str(tiny_dir / "roberta" / "model.pt"), "--optimizer", "adam", "--lr", "1e-3",
            "--max-tokens", "256", "--cpu", "--save-dir", str(save_dir), "--max-update", "2", "--no-save",
            "--required-batch-size-multiple", "1", "--num-workers", "0", "--log-format", "simple"]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["repo root", "installed, by path", "installed beside fairseq"])
def test_fairseq_train_loads_the_plugin(where, installed, tiny_dir, tmp_path):
    """``--user-dir fairseq_defemb`` from the repo root; ``--user-dir <site-packages>/fairseq_defemb``
    for any installed copy; and plain ``--user-dir fairseq_defemb`` from any directory when the
    plugin is installed beside fairseq (fairseq looks for a user dir next to its own package)."""
    import fairseq

    env = {**os.environ}
    if where == "repo root":
        cwd, user_dir = REPO, "fairseq_defemb"
    else:
        cwd = tmp_path / "elsewhere"
        cwd.mkdir()
        env["PYTHONPATH"] = str(installed)
        user_dir = str(installed / "fairseq_defemb")
        if where == "installed beside fairseq":
            beside = tmp_path / "site"
            for package in ("fairseq_defemb", "preprocess"):
                shutil.copytree(installed / package, beside / package)
            shutil.copytree(Path(fairseq.__file__).parent, beside / "fairseq", ignore=IGNORED)
            env["PYTHONPATH"], user_dir = str(beside), "fairseq_defemb"
    result = subprocess.run(tiny_train(user_dir, tiny_dir, tmp_path / "ckpt"), cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done training" in result.stdout + result.stderr


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version.strip()
    return pins


def test_every_requirement_is_pinned_in_the_lock():
    requirements = set()
    lines = [line for name in ("requirements.txt", "requirements-nodeps.txt") for line in (REPO / name).read_text().splitlines()]
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            requirements.add(canonical(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]))
    unpinned = requirements - set(lock_pins())
    assert not unpinned, f"{sorted(unpinned)} required but not in requirements.lock: run `make lock`"
    assert not {"torch", "ve-fairseq", "fairseq-defemb", "torchaudio"} & set(lock_pins())  # the Makefile pins these


def test_the_installed_versions_are_the_locked_ones():
    """`make install` installs with `-c requirements.lock`, so this venv holds exactly the lock."""
    wrong = {}
    for name, version in lock_pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"(locked, installed) differ: {wrong}; run `make install` (or `make lock` if requirements changed)"
