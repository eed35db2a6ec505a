"""The documentation cannot go stale: README.md and docs/*.md against the code.

- every ``frcnn ...`` command line in a shell code block parses with the real parser
  (``frcnn.cli.build_parser``), and so does each optional ``[...]`` group added to it;
- every demo model path (``output/demo/.../*_iter_N.caffemodel``) names the file that
  ``frcnn demo`` writes today (``frcnn.app.demo.DEMO.iters``, the variant's snapshot prefix);
- the README's Python API example runs, on a tiny model trained here.
"""
from __future__ import annotations

import contextlib
import copy
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from frcnn.cli import build_parser
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "sh", "bash", "shell", "console"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")


@dataclass
class Block:
    path: Path
    line: int          # 1-based line of the first line of the block's body
    lang: str
    lines: list[str]


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    blocks, current, fence = [], None, None
    for number, text in enumerate(path.read_text().splitlines(), 1):
        match = FENCE.match(text)
        if current is None:
            if match:
                fence = match.group(1)
                current = Block(path, number + 1, match.group(2).lower(), [])
        elif match and match.group(1).startswith(fence) and not match.group(2):
            blocks.append(current)
            current = None
        else:
            current.lines.append(text)
    assert current is None, f"{path}: a code block opened at line {current.line - 1} never closes"
    return blocks


@dataclass
class Command:
    where: str         # file:line
    text: str          # the logical line as written (continuations joined)
    base: list[str]    # argv after 'frcnn', optional groups left out
    groups: list[list[str]]  # each optional [...] group's tokens


def split_groups(tokens: list[str]) -> tuple[list[str], list[list[str]]]:
    """``tokens`` without their ``[...]`` groups, and the groups (brackets removed)."""
    base: list[str] = []
    groups: list[list[str]] = []
    depth = 0
    for token in tokens:
        opened = len(token) - len(token.lstrip("["))
        if opened and depth == 0:
            groups.append([])
        depth += opened
        closed = len(token) - len(token.rstrip("]")) if depth else 0
        word = token[opened:len(token) - closed] if closed else token[opened:]
        if depth:
            if word:
                groups[-1].append(word)
            depth -= closed
            assert depth >= 0, f"unbalanced ']' in {tokens}"
        else:
            base.append(token)
    assert depth == 0, f"unbalanced '[' in {tokens}"
    return base, groups


def frcnn_commands() -> list[Command]:
    """Every ``frcnn`` command line in the shell blocks of the README and docs/*.md."""
    found = []
    for path in DOCS:
        for block in code_blocks(path):
            if block.lang not in SHELL_LANGS:
                continue
            pending, start = "", 0
            for offset, text in enumerate(block.lines):
                if not pending:
                    start = block.line + offset
                stripped = text.rstrip()
                if stripped.endswith("\\"):
                    pending += stripped[:-1] + " "
                    continue
                logical, pending = pending + text, ""
                where = f"{path.relative_to(ROOT)}:{start}"
                if not re.match(r"\s*(\$ )?([A-Z_][A-Z0-9_]*=\S*\s+)*(\S*/)?frcnn(\s|$)", logical):
                    continue  # not an frcnn command (another tool, a listing, output)
                try:
                    tokens = shlex.split(logical.strip().removeprefix("$ "), comments=True)
                except ValueError as e:
                    raise AssertionError(f"{where}: cannot split {logical!r}: {e}") from None
                while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
                    tokens = tokens[1:]  # VAR=value before the command
                if not tokens or not (tokens[0] == "frcnn" or tokens[0].endswith("/frcnn")):
                    continue
                base, groups = split_groups(tokens[1:])
                found.append(Command(where, logical.strip(), base, groups))
    return found


def parse(argv: list[str]) -> str | None:
    """None if ``frcnn argv`` parses, else argparse's message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        return err.getvalue().strip() or f"exit {e.code}"
    return None


COMMANDS = frcnn_commands()


def test_the_docs_have_commands_to_check():
    where = {c.where.split(":")[0] for c in COMMANDS}
    assert len(COMMANDS) >= 30 and "README.md" in where, sorted(where)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(command: Command):
    problem = parse(command.base)
    assert problem is None, (f"{command.where}: `{command.text}` does not parse "
                             f"(as frcnn {shlex.join(command.base)}):\n{problem}")
    for group in command.groups:
        problem = parse(command.base + group)
        assert problem is None, (f"{command.where}: the optional group [{' '.join(group)}] of "
                                 f"`{command.text}` does not parse:\n{problem}")


def test_groups_are_split_out():
    base, groups = split_groups(["train", "--out", "x", "[--iters", "5]", "[--force]",
                                 "[--a", "1", "--b", "2]"])
    assert base == ["train", "--out", "x"]
    assert groups == [["--iters", "5"], ["--force"], ["--a", "1", "--b", "2"]]


def test_a_wrong_command_is_caught():
    assert "--no-such-option" in parse(["train", "--out", "x", "--no-such-option"])
    assert "invalid int value" in parse(["train", "--out", "x", "--iters", "N"])


# ------------------------------------------------------------ the demo's model file name

def demo_model_names() -> set[str]:
    from frcnn.app.demo import DEMO
    from frcnn.nets.variants import PRESETS

    names = set()
    for ohem, folder in ((False, "train"), (True, "train_ohem")):
        variant = PRESETS["squeezenet/faster_rcnn_end2end" + ("_ohem" if ohem else "")]
        names.add(f"output/demo/{folder}/{variant.snapshot_prefix}_iter_{DEMO.iters}.caffemodel")
    return names


def test_demo_model_paths_name_what_the_demo_writes():
    expected = demo_model_names()
    pattern = re.compile(r"output/demo/[\w./-]*?\.caffemodel")
    seen, wrong = 0, []
    for path in DOCS:
        for number, text in enumerate(path.read_text().splitlines(), 1):
            for match in pattern.finditer(text):
                seen += 1
                if match.group(0) not in expected:
                    wrong.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not wrong, (f"demo model paths other than what `frcnn demo` writes "
                       f"({', '.join(sorted(expected))}):\n" + "\n".join(wrong))
    assert seen, "no demo model path found: the check checks nothing"


# ------------------------------------------------------------ the README's Python example

def python_api_example() -> str:
    """The first ```python block under the README's '## Python API' heading."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Python API\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "README.md has no '## Python API' section"
    block = re.search(r"^```python\n(.*?)^```", match.group(1), re.M | re.S)
    assert block, "README.md's '## Python API' section has no ```python block"
    return block.group(1)


def rebind(code: str, **values: str) -> str:
    """``code`` with its top-level ``NAME = ...`` lines replaced by the given values."""
    for name, value in values.items():
        code, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", code, count=1, flags=re.M)
        assert n == 1, f"the README's Python API example has no `{name} = ...` line to rebind"
    return code


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-iteration model on the tiny synthetic folder, as tests/frcnn/app/test_own_dataset.py."""
    from frcnn import cli, config
    from tests.tiny_synth import SMALL, write_tiny_synth

    folder = write_tiny_synth(tmp_path_factory.mktemp("mine"), 8, 3)
    out = tmp_path_factory.mktemp("run")
    saved = copy.deepcopy(config.cfg)
    try:
        assert cli.main(["train", "--net", "squeezenet/faster_rcnn_end2end", "--dataset",
                         str(folder), "--iters", "2", "--out", str(out), "--base-lr", "0.001",
                         "--scales", "1.5,3", "--iter-size", "1", "--display", "1",
                         "--set", *SMALL]) == 0
    finally:
        config.cfg.clear()
        config.cfg.update(saved)
    (model,) = sorted(out.glob("*.caffemodel"))
    return model, folder


def test_python_api_example_runs(tiny_model, cfg, capsys):
    model, folder = tiny_model
    image = sorted((folder / "JPEGImages").glob("*.jpg"))[0]
    code = rebind(python_api_example(), MODEL=str(model), IMAGE=str(image),
                  DATASET=str(folder))
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md (## Python API)", "exec"), namespace)
    assert len(namespace["detections"]) == len(namespace["classes"]) == 4
    assert namespace["detections"][0].shape == (0, 5)
    assert set(namespace["aps"]) >= {"mAP"}
    assert "VOC07 mAP" in capsys.readouterr().out


def test_python_api_example_is_found():
    code = python_api_example()
    assert "load_detector" in code and "detect(" in code and "run_test" in code
    with pytest.raises(AssertionError, match="no `NOPE = ...` line"):
        rebind(code, NOPE="x")
