"""The command blocks of README.md and docs/*.md, each found by the name its marking comment gives it.

Every fenced ``bash`` or ``python`` block (``sh``, ``shell``, ``console``, ``py`` too) sits right
below an HTML comment, invisible on GitHub, that names it and says how it is tested:

    <!-- block NAME: tests/test_FILE.py::test_NAME -->
        that test extracts the block with ``doc_block("NAME")`` and runs it, replacing at most the
        settings lines at its top (``NAME=value`` in bash, ``NAME = value`` above ``# ---`` in Python);
        the text beside the block says which ones, and what stands in for a model it names.
    <!-- block NAME: twin TWIN[, TWIN ...] (why this one does not run in a test) -->
        the block needs a GPU, a full-size model, or is a make target; each TWIN is a block, run
        by a test, that does the same at CPU size.

Output, layouts and other text that is no command is fenced as ``text``. ``tests/test_doc_blocks.py``
fails on a command block without a comment, a name used twice, a test that does not exist or does
not name its block, and a twin that is not itself run by a test.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console", "python", "py"}
MARK = re.compile(r"^<!--\s*block\s+([\w.-]+):\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    where: str  # FILE:LINE of the opening fence
    line: int
    language: str
    text: str
    name: str | None  # None: no marking comment right above the fence
    how: str  # the comment's text after "NAME:"


def documents(repo: Path = REPO) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def blocks_of(path: Path, repo: Path = REPO) -> list[Block]:
    """Every fenced block of a Markdown file, with the marking comment on the line above it, if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence[0] * len(fence))
                    and not lines[j].strip(fence[0]).strip()), None)
        if end is None:
            raise ValueError(f"{path}:{i + 1}: a fence that is never closed")
        mark = MARK.match(lines[i - 1]) if i else None
        found.append(Block(f"{path.relative_to(repo)}:{i + 1}", i + 1, language, "\n".join(lines[i + 1:end]) + "\n",
                           mark.group(1) if mark else None, mark.group(2) if mark else ""))
        i = end + 1
    return found


def all_blocks(repo: Path = REPO) -> list[Block]:
    return [block for path in documents(repo) for block in blocks_of(path, repo)]


def doc_block(name: str) -> str:
    """The text of the block named ``name`` (exactly one block of README.md and docs/*.md has it)."""
    named = [block for block in all_blocks() if block.name == name]
    assert len(named) == 1, f"{len(named)} blocks named {name!r} in README.md and docs/*.md"
    return named[0].text


def with_settings(block: str, settings: dict[str, str]) -> str:
    """A bash block with the named settings' lines (``NAME=...`` at the start of a line) replaced;
    every setting must exist in it."""
    for name, value in settings.items():
        block, found = re.subn(rf"^{name}=.*$", f"{name}={value}", block, count=1, flags=re.M)
        assert found, f"the block has no setting {name}= any more; update this test"
    return block


def quoted(options: list[str]) -> str:
    return '"' + " ".join(options) + '"'


def run_bash(script: str, cwd, env: dict[str, str] | None = None, timeout: float = 1500) -> str:
    """``bash -euo pipefail`` on ``script`` in ``cwd`` with the venv's commands first on PATH; the
    output, or a failure showing its end."""
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"block failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr
