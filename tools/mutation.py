"""Mutation check of the pure cores: does the test suite notice small faults?

Run:  python tools/mutation.py [MODULE ...] [--seed 0] [--per-file 60] [--timeout 60]
                                    [--jobs 1] [--list] [--show-equivalent] [--suggest]

MODULE is a path (lib/frcnn/boxes.py), a name relative to lib/frcnn (boxes, data/roidb) or
a dotted name (frcnn.data.roidb); default: every module of ``DEFAULT_MODULES``.

For each module, mutants are made from its syntax tree (stdlib ``ast``): flipped or
boundary-shifted comparisons, swapped arithmetic, dropped constant terms (``+ 1``),
changed constants, min/max, any/all, argmin/argmax, floor/ceil and and/or swaps, negated
conditions, removed unary operators, removed statements and ``return None``.  Strings,
f-strings, docstrings, annotations and imports are left alone, and so are two changes numpy
cannot tell apart: the ``-1`` of ``reshape`` made ``-2`` and ``astype``'s ``copy`` flag.
``--per-file N`` mutants are sampled per module (seeded by --seed and the module's path, so
the samples of one module do not depend on which others run; 0 means every mutant).

Each mutant is written into a temporary copy of lib/ that comes first on PYTHONPATH (the
working tree is never modified) and the module's test files (``tests_for``: the numpy-only
tests, never the Caffe-net ones) run with ``pytest -x -q`` in a subprocess.  A failing,
erroring or timed-out run kills the mutant.  The unmutated copy must pass first.

Survivors judged equivalent (no test can tell them apart from the original) are listed
with the reason in tools/mutation_equivalent.md, keyed by file, enclosing function,
the mutated line's text and the mutation (so line numbers may move); the report gives
killed / survived per file, the score over all mutants and over the non-equivalent ones,
and the diff of every non-equivalent survivor.  The exit status is 1 when a module's
non-equivalent score is below 95% (or its unmutated tests fail), else 0.

Not part of the test suite (pytest collects tests/ only).  A mutant costs 1.5 to 2 s (a
pytest start and the module's fast tests), so the defaults (about 1000 mutants) take about
30 minutes of one core; name modules, or lower --per-file, for a quicker look.
"""
from __future__ import annotations

import argparse
import ast
import copy
import difflib
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"
PACKAGE = LIB / "frcnn"
EQUIVALENT_FILE = ROOT / "tools" / "mutation_equivalent.md"

#: Modules checked by default (relative to lib/frcnn): the pure cores.
DEFAULT_MODULES = (
    "boxes", "targets", "proposals", "evaluation", "anchors", "ohem", "detection", "nms",
    "data/roidb", "data/voc", "data/coco", "data/minibatch", "data/blobs",
    "data/proposal_files", "data/synth", "data/problems", "data/fast_rcnn",
)

#: Test files of a module beyond tests/frcnn/<dir>/test_<name>*.py (globs, from the root).
EXTRA_TESTS = {
    "data/problems": ("tests/frcnn/data/test_voc*.py", "tests/frcnn/data/test_coco*.py"),
    "data/blobs": ("tests/frcnn/data/test_minibatch.py",),
}

#: pytest -k expressions deselecting tests that need more than numpy (Caffe layers) or
#: that time themselves.
DESELECT = {
    "proposals": "not the_layer",
    "data/coco": "not roi_data_layer",
    "data/problems": "not roi_data_layer",
}


# ----------------------------------------------------------------------------- modules

def module_key(name: str) -> str:
    """'lib/frcnn/data/voc.py', 'data/voc', 'frcnn.data.voc' -> 'data/voc'."""
    text = name.strip().replace("\\", "/")
    if text.endswith(".py"):
        text = text[:-3]
    if "/" not in text and "." in text:
        text = text.replace(".", "/")
    for prefix in ("lib/frcnn/", "frcnn/"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if not (PACKAGE / f"{text}.py").is_file():
        raise SystemExit(f"mutation.py: no module {name!r} (looked for "
                         f"{PACKAGE / (text + '.py')})")
    return text


def source_path(key: str) -> Path:
    return PACKAGE / f"{key}.py"


def tests_for(key: str) -> list[str]:
    """The test files (relative to the root) that run against the mutants of ``key``."""
    folder, _, name = key.rpartition("/")
    base = "tests/frcnn" + (f"/{folder}" if folder else "")
    patterns = [f"{base}/test_{name}.py", f"{base}/test_{name}_*.py", *EXTRA_TESTS.get(key, ())]
    files = sorted({os.path.relpath(p, ROOT) for pat in patterns
                    for p in glob.glob(str(ROOT / pat))},
                   key=lambda f: (not f.endswith("_exact.py"), f))  # fast, exact ones first
    if not files:
        raise SystemExit(f"mutation.py: no test files for {key} ({', '.join(patterns)})")
    return files


# ----------------------------------------------------------------------------- mutants

_CMP_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE, ast.GtE), ast.LtE: (ast.Lt, ast.Gt), ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,), ast.NotIn: (ast.In,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
}
_BIN_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub,), ast.Sub: (ast.Add,), ast.Mult: (ast.Div,), ast.Div: (ast.Mult,),
    ast.FloorDiv: (ast.Mult,), ast.Mod: (ast.FloorDiv,), ast.Pow: (ast.Mult,),
    ast.BitAnd: (ast.BitOr,), ast.BitOr: (ast.BitAnd,), ast.BitXor: (ast.BitOr,),
    ast.LShift: (ast.RShift,), ast.RShift: (ast.LShift,),
}
#: names swapped where they are called (min(...)) or used as attributes (np.minimum).
_NAME_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any"}
_ATTR_SWAPS = {
    "minimum": "maximum", "maximum": "minimum", "min": "max", "max": "min", "amin": "amax",
    "amax": "amin", "argmin": "argmax", "argmax": "argmin", "any": "all", "all": "any",
    "floor": "ceil", "ceil": "floor", "nanmin": "nanmax", "nanmax": "nanmin",
}
_DELETABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Raise, ast.Continue,
              ast.Break, ast.Delete)


@dataclass
class Site:
    """Where and how to mutate: the node at ``path`` is replaced by ``make(node)``."""
    path: tuple  # ((field, index or None), ...) from the module node
    kind: str
    make: Callable[[ast.AST], ast.AST]


@dataclass
class Mutant:
    file: str                 # relative to the root
    line: int                 # first line of the mutated node (1-based)
    line_text: str            # that line of the original, stripped
    original: str             # the node's source, on one line
    replacement: str          # the replacement's source, on one line
    kind: str
    source: str               # the whole mutated module
    occurrence: int = 1       # the n-th `original` on that line (columns left to right)
    scope: str = "<module>"   # the enclosing class and function, e.g. Source.__init__
    status: str = ""          # killed / survived / timeout
    equivalent: str = ""      # the reason, when listed as equivalent
    seconds: float = 0.0

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.file, self.scope, _norm(self.line_text), self.mutation)

    @property
    def mutation(self) -> str:
        """`original` -> `replacement`, with (#n) when `original` is not the first such
        text on its line."""
        nth = f" (#{self.occurrence})" if self.occurrence > 1 else ""
        return f"`{_norm(self.original)}` -> `{_norm(self.replacement)}`{nth}"

    def describe(self) -> str:
        return f"{self.file}:{self.line} ({self.scope}) [{self.kind}] {self.mutation}"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _skip_assign(stmt: ast.stmt) -> bool:
    """__all__ and the like: not behaviour."""
    targets = stmt.targets if isinstance(stmt, ast.Assign) else []
    return any(isinstance(t, ast.Name) and t.id.startswith("__") for t in targets)


def _walk(node: ast.AST, path: tuple) -> Iterator[tuple[ast.AST, tuple]]:
    """Every node below ``node`` with its path, skipping what is never mutated."""
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment", "decorator_list"):
            continue
        items = value if isinstance(value, list) else [value]
        for i, child in enumerate(items):
            if not isinstance(child, ast.AST):
                continue
            if isinstance(child, (ast.JoinedStr, ast.Import, ast.ImportFrom)):
                continue
            if isinstance(child, ast.stmt) and (_is_docstring(child) or _skip_assign(child)):
                continue
            sub = path + ((name, i if isinstance(value, list) else None),)
            yield child, sub
            yield from _walk(child, sub)


def _const_replacement(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value == 0:
        return 1.0
    return value * 2


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def _known_equivalent_constant(tree: ast.Module, path: tuple) -> bool:
    """Constants whose change numpy cannot tell: the 1 of a ``reshape(..., -1, ...)``
    (numpy takes any negative size as "the rest") and ``astype(..., copy=...)`` (a copy or
    not of an array nobody else holds)."""
    parent = _resolve(tree, path[:-1])[3] if len(path) > 1 else None
    grand = _resolve(tree, path[:-2])[3] if len(path) > 2 else None
    if isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.USub) \
            and isinstance(grand, ast.Call) and isinstance(grand.func, ast.Attribute) \
            and grand.func.attr == "reshape":
        return True
    return (path[-1][0] == "value" and isinstance(parent, ast.keyword) and parent.arg == "copy"
            and isinstance(grand, ast.Call) and isinstance(grand.func, ast.Attribute)
            and grand.func.attr == "astype")


def sites(tree: ast.Module) -> list[Site]:
    """Every mutation of the module, in source order."""
    out: list[Site] = []
    for node, path in _walk(tree, ()):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for new in _CMP_SWAPS.get(type(op), ()):
                    def make(n, i=i, new=new):
                        n.ops[i] = new()
                        return n
                    out.append(Site(path, "compare", make))
        elif isinstance(node, ast.BinOp):
            for new in _BIN_SWAPS.get(type(node.op), ()):
                def make(n, new=new):
                    n.op = new()
                    return n
                out.append(Site(path, "arithmetic", make))
            if isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
                if _is_number(node.right):
                    out.append(Site(path, "drop term", lambda n: n.left))
                elif _is_number(node.left) and isinstance(node.op, (ast.Add, ast.Mult)):
                    out.append(Site(path, "drop term", lambda n: n.right))
        elif isinstance(node, ast.AugAssign):
            for new in _BIN_SWAPS.get(type(node.op), ()):
                def make(n, new=new):
                    n.op = new()
                    return n
                out.append(Site(path, "arithmetic", make))
        elif isinstance(node, ast.BoolOp):
            def make(n):
                n.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()
                return n
            out.append(Site(path, "and/or", make))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub,
                                                                     ast.Invert)):
            out.append(Site(path, "unary", lambda n: n.operand))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not _known_equivalent_constant(tree, path):
            def make(n):
                n.value = _const_replacement(n.value)
                return n
            out.append(Site(path, "constant", make))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in _NAME_SWAPS:
                def make(n):
                    n.func.id = _NAME_SWAPS[n.func.id]
                    return n
                out.append(Site(path, "swap call", make))
        if isinstance(node, ast.Attribute) and node.attr in _ATTR_SWAPS:
            def make(n):
                n.attr = _ATTR_SWAPS[n.attr]
                return n
            out.append(Site(path, "swap call", make))
        if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)) \
                and not isinstance(node.test, (ast.Compare, ast.UnaryOp)):
            out.append(Site(path + (("test", None),), "negate", lambda n: ast.UnaryOp(
                ast.Not(), n)))
        if isinstance(node, ast.comprehension):
            for j, cond in enumerate(node.ifs):
                if not isinstance(cond, (ast.Compare, ast.UnaryOp)):
                    out.append(Site(path + (("ifs", j),), "negate",
                                    lambda n: ast.UnaryOp(ast.Not(), n)))
        if isinstance(node, _DELETABLE) and isinstance(node, ast.stmt):
            out.append(Site(path, "remove statement", lambda n: ast.Pass()))
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(Site(path, "return None", lambda n: ast.Return(ast.Constant(None))))
    return out


def _resolve(tree: ast.AST, path: tuple) -> tuple[ast.AST, str, int | None, ast.AST]:
    """(parent, field, index, node) of the node at ``path``."""
    parent, node = None, tree
    name, index = "", None
    for name, index in path:
        parent = node
        value = getattr(node, name)
        node = value[index] if index is not None else value
    return parent, name, index, node  # type: ignore[return-value]


def _line_offsets(source: str) -> list[int]:
    """Byte offset of each line start (ast columns are UTF-8 byte offsets)."""
    offsets, total = [0], 0
    for line in source.encode().splitlines(keepends=True):
        total += len(line)
        offsets.append(total)
    return offsets


def _dump(tree: ast.AST) -> str:
    return ast.dump(tree, include_attributes=False)


def build_mutant(file: str, source: str, tree: ast.Module, site: Site) -> Mutant | None:
    """The mutated module text for one site, or None when the mutation cannot be written
    as a text edit that parses to the intended tree (or changes nothing)."""
    target_tree = copy.deepcopy(tree)
    parent, name, index, node = _resolve(target_tree, site.path)
    _, _, _, original_node = _resolve(tree, site.path)
    replacement = site.make(copy.deepcopy(node))
    if index is None:
        setattr(parent, name, replacement)
    else:
        getattr(parent, name)[index] = replacement
    expected = _dump(target_tree)
    if expected == _dump(tree):
        return None
    data = source.encode()
    offsets = _line_offsets(source)
    start = offsets[original_node.lineno - 1] + original_node.col_offset
    end = offsets[original_node.end_lineno - 1] + original_node.end_col_offset
    original_text = data[start:end].decode()
    new_text = ast.unparse(replacement)
    for candidate in (new_text, f"({new_text})"):
        mutated = (data[:start] + candidate.encode() + data[end:]).decode()
        try:
            if _dump(ast.parse(mutated)) == expected:
                break
        except SyntaxError:
            continue
    else:
        return None
    # Described with its context when the node is a small part of an expression (a
    # constant, a name, an operand): `reshape(-1, 5)` -> `reshape(-2, 5)`, not `1` -> `2`.
    shown = original_node
    if isinstance(original_node, (ast.Constant, ast.Name, ast.Attribute, ast.UnaryOp)):
        for up in (1, 2):  # at most two levels up, while short and on one line
            if len(site.path) <= up:
                break
            context = _resolve(tree, site.path[:-up])[3]
            if not (isinstance(context, ast.expr) and context.lineno == context.end_lineno
                    and context.end_col_offset - context.col_offset <= 60):
                break
            shown = context
    s_start = offsets[shown.lineno - 1] + shown.col_offset
    s_end = offsets[shown.end_lineno - 1] + shown.end_col_offset
    before = data[s_start:s_end].decode()
    after = (data[s_start:start] + candidate.encode() + data[end:s_end]).decode()
    line = data.splitlines()[shown.lineno - 1]
    first_line = before.splitlines()[0] if before else ""
    occurrence = 1 + line[:shown.col_offset].decode().count(first_line) if first_line else 1
    names = [n.name for n in (_resolve(tree, site.path[:i])[3] for i in range(1, len(site.path)))
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return Mutant(file, original_node.lineno, line.decode().strip(), _norm(before),
                  _norm(after), site.kind, mutated, occurrence, ".".join(names) or "<module>")


def sample_mutants(key: str, per_file: int, seed: int) -> tuple[list[Mutant], int]:
    """(sampled mutants of the module, number of mutation sites)."""
    path = source_path(key)
    file = os.path.relpath(path, ROOT)
    source = path.read_text()
    tree = ast.parse(source)
    all_sites = sites(tree)
    order = list(range(len(all_sites)))
    random.Random(f"{seed}:{file}").shuffle(order)
    chosen: list[Mutant] = []
    seen: set = set()
    for i in order:
        if per_file and len(chosen) >= per_file:
            break
        mutant = build_mutant(file, source, tree, all_sites[i])
        if mutant is None or mutant.source in seen:
            continue
        seen.add(mutant.source)
        chosen.append(mutant)
    chosen.sort(key=lambda m: (m.line, m.original, m.replacement))
    return chosen, len(all_sites)


# ----------------------------------------------------------------------------- equivalents

def read_equivalents(path: Path = EQUIVALENT_FILE) -> dict[tuple[str, str, str, str], str]:
    """{(file, scope, line text, mutation): reason} from the markdown list.

    Entries look like (the file as a ``##`` heading, then one entry per mutant)::

        ## lib/frcnn/boxes.py
        - line: `return np.where(iou > 0, iou, 0.0)`
          in: `bbox_overlaps_reference`
          mutant: `iou > 0` -> `iou >= 0`
          why: iou >= 0 always; where it is 0 the result is 0 either way.

    ``in`` is the enclosing class and function (``<module>`` at the top level), ``mutant``
    what the report prints (a trailing ``(#n)``: the n-th such text on the line); line text
    and mutant are compared with runs of white space made one space.
    """
    out: dict[tuple[str, str, str, str], str] = {}
    if not path.is_file():
        return out
    file = line = mutant = scope = None
    for raw in path.read_text().splitlines():
        text = raw.strip()
        if text.startswith("## "):
            file, line, mutant, scope = text[3:].strip().strip("`"), None, None, None
            continue
        m = re.match(r"^- line: `(.*)`$", text)
        if m:
            line, mutant, scope = m.group(1), None, None
            continue
        m = re.match(r"^in: `(.*)`$", text)
        if m:
            scope = m.group(1)
            continue
        m = re.match(r"^mutant: (`.*` -> `.*`(?: \(#\d+\))?)$", text)
        if m:
            mutant = m.group(1)
            continue
        m = re.match(r"^why: (.*)$", text)
        if m and file and line is not None and mutant and scope:
            out[(file, scope, _norm(line), _norm(mutant))] = m.group(1)
            line = mutant = scope = None
    return out


def equivalent_entry(m: Mutant, reason: str = "TODO") -> str:
    return (f"- line: `{m.line_text}`\n  in: `{m.scope}`\n  mutant: {m.mutation}\n"
            f"  why: {reason}\n")


# ----------------------------------------------------------------------------- running

@dataclass
class Workspace:
    """A temporary copy of lib/ (first on PYTHONPATH) where one mutant at a time is written."""
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="frcnn-mut-")))

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Copy lib/ as it is now (others may be editing it while a long run goes on)."""
        shutil.rmtree(self.root / "lib", ignore_errors=True)
        shutil.copytree(LIB, self.root / "lib",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))

    def lib_file(self, file: str) -> Path:
        return self.root / file

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(self.root / "lib"), str(ROOT / "layers")]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONDONTWRITEBYTECODE="1",
                   PYTHONHASHSEED="0", MPLBACKEND="Agg")
        return env

    def check_imports(self) -> None:
        """Exit unless frcnn is imported from this copy (not the working tree)."""
        code = "import frcnn, sys; sys.stdout.write(frcnn.__file__)"
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=self.env(),
                             capture_output=True, text=True)
        where = Path(out.stdout.strip() or "?").resolve()
        if self.root.resolve() not in where.parents:
            raise SystemExit(f"mutation.py: frcnn imports from {where}, not from the copy in "
                             f"{self.root} ({out.stderr.strip()[-500:]})")

    def run_tests(self, tests: list[str], deselect: str | None, timeout: float
                  ) -> tuple[str, str]:
        """('passed' | 'failed' | 'timeout', output tail)."""
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", *tests]
        if deselect:
            cmd += ["-k", deselect]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            return "timeout", ""
        return ("passed" if proc.returncode == 0 else "failed"), out[-2000:]

    def run_mutant(self, m: Mutant, original: str, tests: list[str], deselect: str | None,
                   timeout: float) -> None:
        target = self.lib_file(m.file)
        start = time.perf_counter()
        try:
            target.write_text(m.source)
            result, _ = self.run_tests(tests, deselect, timeout)
        finally:
            target.write_text(original)
        m.seconds = time.perf_counter() - start
        m.status = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[result]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def diff(m: Mutant, original: str) -> str:
    lines = difflib.unified_diff(original.splitlines(), m.source.splitlines(),
                                 f"a/{m.file}", f"b/{m.file}", n=1, lineterm="")
    return "\n".join(lines)


def run_module(key: str, args: argparse.Namespace, pool: list[Workspace],
               equivalents: dict) -> dict:
    tests = tests_for(key)
    deselect = DESELECT.get(key)
    file = os.path.relpath(source_path(key), ROOT)
    for ws in pool:  # lib/ as it is now, the mutated module's source read just after
        ws.refresh()
    original = source_path(key).read_text()
    mutants, n_sites = sample_mutants(key, args.per_file, args.seed)
    print(f"\n=== {file}: {len(mutants)} of {n_sites} mutants; tests: {' '.join(tests)}"
          + (f" -k '{deselect}'" if deselect else ""), flush=True)
    if args.list:
        for m in mutants:
            print("  " + m.describe())
        return {"file": file, "listed": len(mutants)}
    for ws in pool:  # exactly the source the mutants were made from
        ws.lib_file(file).write_text(original)
    status, out = pool[0].run_tests(tests, deselect, args.timeout * 3)
    if status != "passed":
        print(f"the unmutated tests do not pass ({status}); skipping {file}\n{out}")
        return {"file": file, "error": status}
    for m in mutants:
        m.equivalent = equivalents.get(m.key, "")

    def work(item: tuple[int, Mutant]) -> None:
        i, m = item
        ws = pool[i % len(pool)]
        ws.run_mutant(m, original, tests, deselect, args.timeout)

    # one mutant per workspace at a time: chunk by workspace
    chunks = [[(i, m) for i, m in enumerate(mutants) if i % len(pool) == w]
              for w in range(len(pool))]
    t0 = time.perf_counter()

    def run_chunk(chunk):
        for item in chunk:
            work(item)
            m = item[1]
            if m.status == "survived" and not args.quiet:
                tag = "equivalent" if m.equivalent else "SURVIVED"
                print(f"  {tag}: {m.describe()}", flush=True)

    with ThreadPoolExecutor(len(pool)) as ex:
        list(ex.map(run_chunk, chunks))
    killed = sum(m.status in ("killed", "timeout") for m in mutants)
    survivors = [m for m in mutants if m.status == "survived"]
    eq = [m for m in survivors if m.equivalent]
    stale = [m for m in mutants if m.equivalent and m.status != "survived"]
    real = [m for m in survivors if not m.equivalent]
    for m in real:
        print(f"\n--- survivor {m.describe()}\n{diff(m, original)}")
    if args.show_equivalent:
        for m in eq:
            print(f"\n--- equivalent {m.describe()}\n    why: {m.equivalent}")
    for m in stale:
        print(f"  note: listed as equivalent but killed: {m.describe()}")
    if real and args.suggest:
        print("\n  entries for mutation_equivalent.md, if you judge them equivalent:")
        print(f"## {file}")
        for m in real:
            print(equivalent_entry(m), end="")
    n = len(mutants)
    return {"file": file, "mutants": n, "killed": killed, "survived": len(survivors),
            "equivalent": len(eq), "timeouts": sum(m.status == "timeout" for m in mutants),
            "seconds": time.perf_counter() - t0}


def percent(a: int, b: int) -> str:
    return f"{100.0 * a / b:5.1f}%" if b else "    -"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", help="modules to mutate (default: the pure cores)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--per-file", type=int, default=60,
                   help="mutants sampled per module; 0: all (default 60)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds per mutant's test run; longer counts as killed (default 60)")
    p.add_argument("--jobs", type=int, default=1, help="test runs in parallel (default 1)")
    p.add_argument("--list", action="store_true", help="list the sampled mutants, run nothing")
    p.add_argument("--quiet", action="store_true", help="no line per survivor while running")
    p.add_argument("--show-equivalent", action="store_true",
                   help="also print the survivors listed as equivalent, with the reason")
    p.add_argument("--suggest", action="store_true",
                   help="print mutation_equivalent.md entries for the survivors")
    args = p.parse_args(argv)
    keys = [module_key(m) for m in args.modules] or list(DEFAULT_MODULES)
    equivalents = read_equivalents()
    pool = [Workspace() for _ in range(max(1, args.jobs))]
    results = []
    t0 = time.perf_counter()
    try:
        pool[0].check_imports()
        for key in keys:
            results.append(run_module(key, args, pool, equivalents))
    finally:
        for ws in pool:
            ws.close()
    if args.list:
        return 0
    print(f"\n{'file':<34} {'mutants':>7} {'killed':>6} {'surv.':>5} {'equiv.':>6} "
          f"{'raw':>6} {'non-eq':>6}")
    tot = {"mutants": 0, "killed": 0, "survived": 0, "equivalent": 0}
    worst = 100.0
    for r in results:
        if "error" in r:
            print(f"{r['file']:<34} unmutated tests {r['error']}")
            worst = 0.0
            continue
        for k in tot:
            tot[k] += r[k]
        non_eq = r["mutants"] - r["equivalent"]
        print(f"{r['file']:<34} {r['mutants']:>7} {r['killed']:>6} {r['survived']:>5} "
              f"{r['equivalent']:>6} {percent(r['killed'], r['mutants']):>6} "
              f"{percent(r['killed'], non_eq):>6}")
        if non_eq:
            worst = min(worst, 100.0 * r["killed"] / non_eq)
    non_eq = tot["mutants"] - tot["equivalent"]
    print(f"{'total':<34} {tot['mutants']:>7} {tot['killed']:>6} {tot['survived']:>5} "
          f"{tot['equivalent']:>6} {percent(tot['killed'], tot['mutants']):>6} "
          f"{percent(tot['killed'], non_eq):>6}")
    print(f"({time.perf_counter() - t0:.0f} s; seed {args.seed}, {args.per_file or 'all'} "
          f"per file)")
    return 0 if worst >= 95.0 else 1


if __name__ == "__main__":
    sys.exit(main())
