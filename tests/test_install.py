"""A non-editable install works outside the source tree: every console command answers --help.

``make install`` installs the project editable; users install it with ``pip install``. This
builds a real wheel install into a temporary target and runs each console entry point from
there, in another directory, with nothing of the source tree on the path.
"""
import configparser
import os
import shutil
import subprocess
import sys

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
    where = subprocess.run([sys.executable, "-c", "import defemb, fairseq_defemb; print(defemb.__file__, fairseq_defemb.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(installed)) for path in where), where
    commands = entry_points(installed)
    assert {"defemb-corpus", "defemb-predict", "defemb-surgery", "defemb-analyze", "defemb-convert-hf"} <= set(commands)
    for command in commands:
        result = subprocess.run([str(installed / "bin" / command), "--help"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command} --help: {result.stderr[-2000:]}"
        assert result.stdout.startswith("usage:"), f"{command} --help printed before its usage: {result.stdout[:300]}"
