"""The package's layout rules (issue 14): no import cycle, no oversized module, names kept."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import ffmpeg_tasks

PACKAGE = Path(ffmpeg_tasks.__file__).parent
MAX_LINES = 650


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Modules of the package that ``path`` imports, at run time or for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("ffmpeg_tasks"):
                continue
            for alias in node.names:  # `from . import transitions` imports a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ffmpeg_tasks"))
    return {m for m in found if m in MODULES and m != name}


FILES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = set(FILES)


def _package_of(module: str) -> str | None:
    parent = module.rpartition(".")[0]
    return parent if parent in MODULES else None


def test_no_import_cycles() -> None:
    graph = {name: _imports(path, name) for name, path in FILES.items()}
    # Importing a.b.c first runs a/__init__ and a/b/__init__: edges from the package in.
    for name in list(graph):
        for target in list(graph[name]):
            parent = _package_of(target)
            while parent is not None and parent != name and not name.startswith(parent + "."):
                graph[name].add(parent)
                parent = _package_of(parent)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_is_too_long() -> None:
    long = {
        name: n
        for name, path in FILES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_imports_alone() -> None:
    for name in sorted(MODULES - {"ffmpeg_tasks.__main__"}):  # that one runs the CLI
        importlib.import_module(name)


def test_moved_names_still_import() -> None:
    from ffmpeg_tasks.backends.saq_worker import run_worker
    from ffmpeg_tasks.policy import CommandLimits, parse_duration
    from ffmpeg_tasks.policy.policy import DEFAULT_INPUT_FORMATS, CommandPolicy
    from ffmpeg_tasks.worker import run_worker as old_run_worker

    assert old_run_worker is run_worker
    assert CommandPolicy().limits == CommandLimits()
    with pytest.warns(DeprecationWarning, match="CommandLimits"):
        from ffmpeg_tasks.policy import Limits
    assert Limits is CommandLimits
    assert parse_duration("1:30") == 90
    assert "mov" in DEFAULT_INPUT_FORMATS
