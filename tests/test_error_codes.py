"""Every error code the package can produce is in ErrorCode, and docs/api.md lists them all."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import ffmpeg_tasks
from ffmpeg_tasks.error_codes import ERROR_CODES, ErrorCode, markdown_table

PACKAGE = Path(ffmpeg_tasks.__file__).parent
DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "error_codes.py"]


def _codes_in(tree: ast.AST) -> set[str]:
    """Literals the source uses as an error code: ``code=…``, ``code = …``, ``error_code=…``,
    and the string elements of tuples/calls whose other elements say it is a code table."""
    found: set[str] = set()

    def literal(node: ast.expr | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.IfExp):
            literal(node.body)
            literal(node.orelse)

    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("code", "error_code"):
            literal(node.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("code", "error_code"):
                    literal(node.value)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for name, value in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(name, ast.Name) and name.id in ("code", "error_code"):
                            literal(value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "_reject"
            and len(node.args) > 1
        ):
            literal(node.args[1])
    return found


def test_the_literal_and_the_meanings_agree() -> None:
    assert list(ERROR_CODES) == list(get_args(ErrorCode))
    assert all(meaning and not meaning.endswith(".") for meaning in ERROR_CODES.values())


def test_every_code_the_source_uses_is_declared() -> None:
    used: dict[str, str] = {}
    for path in _modules():
        for code in _codes_in(ast.parse(path.read_text(encoding="utf-8"))):
            used.setdefault(code, path.relative_to(PACKAGE).as_posix())
    undeclared = {code: where for code, where in used.items() if code not in ERROR_CODES}
    assert not undeclared, f"codes missing from ffmpeg_tasks.error_codes: {undeclared}"


def test_every_declared_code_is_produced_somewhere() -> None:
    literals: set[str] = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
    stale = sorted(code for code in ERROR_CODES if code not in literals)
    assert not stale, f"declared but never produced: {stale}"


def test_docs_list_every_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert markdown_table() in text, "docs/api.md is stale: run `python .ci/error_codes.py`"
