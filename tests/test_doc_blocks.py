"""Every command block of README.md and docs/*.md runs in a test, or has a twin that does.

The marking comments are described in ``tests/doc_blocks.py``. This test reads them and the test
files they name (their syntax trees; nothing is run here): a test that runs a block must exist and
name the block it extracts, so renaming a block or a test breaks this test, not the promise.
"""
import ast
import re
from pathlib import Path

from conftest import example_argv
from doc_blocks import COMMAND_LANGUAGES, MARK, REPO, all_blocks, blocks_of, doc_block, documents

RUN_BY = re.compile(r"^(tests/test_\w+\.py)::(\w+)$")
TWIN = re.compile(r"^twin ([\w.-]+(?:, [\w.-]+)*) \((.+)\)$")


def functions_of(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def names_in(node: ast.AST) -> set[str]:
    """The string constants of a function, its decorators (parametrize) included."""
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def calls_doc_block(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "doc_block"
               for n in ast.walk(tree))


def problems(repo: Path = REPO) -> list[str]:
    blocks = [b for b in all_blocks(repo) if b.language in COMMAND_LANGUAGES]
    found, by_name = [], {}
    for block in blocks:
        if block.name is None:
            found.append(f"{block.where}: a {block.language} block without a `<!-- block NAME: ... -->` comment "
                         "above it (fence output as `text`)")
            continue
        if block.name in by_name:
            found.append(f"{block.where}: the name {block.name!r} is taken by {by_name[block.name].where}")
        by_name[block.name] = block
    for block in by_name.values():
        if run_by := RUN_BY.match(block.how):
            test_file, function = repo / run_by.group(1), run_by.group(2)
            if not test_file.is_file():
                found.append(f"{block.where} ({block.name}): {run_by.group(1)} does not exist")
            elif function not in functions_of(test_file):
                found.append(f"{block.where} ({block.name}): {run_by.group(1)} has no function {function}")
            elif block.name not in names_in(functions_of(test_file)[function]):
                found.append(f"{block.where} ({block.name}): {run_by.group(1)}::{function} does not name the block")
            elif not calls_doc_block(test_file):
                found.append(f"{block.where} ({block.name}): {run_by.group(1)} never calls doc_block()")
        elif twin := TWIN.match(block.how):
            for name in twin.group(1).split(", "):
                other = by_name.get(name)
                if other is None:
                    found.append(f"{block.where} ({block.name}): its twin {name!r} is no block")
                elif not RUN_BY.match(other.how):
                    found.append(f"{block.where} ({block.name}): its twin {name!r} is not run by a test")
        else:
            found.append(f"{block.where} ({block.name}): {block.how!r} is neither `tests/test_X.py::test_y` nor "
                         "`twin NAME (why)`")
    return found


def test_every_command_block_runs_in_a_test_or_has_a_tested_twin():
    assert problems() == []


def test_no_marking_comment_without_its_block():
    for path in documents():
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = {b.line for b in blocks_of(path)}
        for number, line in enumerate(lines, 1):
            if MARK.match(line):
                assert number + 1 in starts, f"{path.relative_to(REPO)}:{number}: a block comment with no fence below it"


def test_the_checker_catches_what_it_should(tmp_path):
    """Pages with an unmarked block, a test that does not name its block, a twin that no test runs
    and a test that does not exist."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "from doc_blocks import doc_block\n\ndef test_runs():\n    doc_block('other')\n")
    (tmp_path / "README.md").write_text(
        "```bash\nls\n```\n\n<!-- block a: tests/test_x.py::test_runs -->\n```bash\nls\n```\n\n"
        "<!-- block b: twin d (a GPU) -->\n```python\nprint()\n```\n\n```text\nnot a command\n```\n")
    (tmp_path / "docs" / "page.md").write_text("<!-- block c: tests/test_x.py::test_gone -->\n```sh\nls\n```\n")
    found = problems(tmp_path)
    assert len(found) == 4, found
    assert found[0].startswith("README.md:1: a bash block without")
    assert found[1].startswith("README.md:6 (a): tests/test_x.py::test_runs does not name the block")
    assert found[2].startswith("README.md:11 (b): its twin 'd' is no block")
    assert found[3].startswith("docs/page.md:2 (c): tests/test_x.py has no function test_gone")


def test_the_ci_lines_of_the_demos_are_what_run_example_runs():
    for name, script in (("demo-ci", "demo.py"), ("demo-bart-ci", "demo_bart.py"), ("eval-ci", "eval.py")):
        argv = example_argv(doc_block(name), Path("/tmp/out"), 900)
        assert argv[1] == str(REPO / "examples" / script) and (REPO / "examples" / script).is_file()
        assert argv[2:] == ["--budget", "ci", "--out", "/tmp/out", "--step-timeout", "900"]


def test_the_readme_pipelines_recipes_are_the_libraries():
    """The pipeline's RECIPE line and its commented alternative are the recommended and paper recipes
    every tool runs for an encoder-only model (fairseq_defemb.recipes), so the README cannot drift from them."""
    import shlex

    from fairseq_defemb.recipes import PAPER, RECOMMENDED

    lines = re.findall(r'^#? ?RECIPE="([^"]*)"', doc_block("pipeline"), flags=re.M)
    arch = re.search(r"--arch (\S+)", doc_block("pipeline")).group(1)
    assert arch.startswith("defemb_roberta")
    assert [shlex.split(line) for line in lines] == [RECOMMENDED.train_options(arch), PAPER.train_options(arch)]
    assert "--definition-only-copies" in doc_block("pipeline") and RECOMMENDED.corpus_flags() == ["--definition-only-copies"]
