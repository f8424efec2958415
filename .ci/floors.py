"""Print `name==floor` for each of pyproject's [project].dependencies, one a line.

CI installs exactly these, so the declared floors are the tested ones and cannot drift.
Every dependency must state its floor as `>=X` (with an optional `<Y` cap).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def floors(pyproject: Path) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        match = SPEC.match(dep)
        floor = None
        if match:
            for clause in match.group(3).split(","):
                clause = clause.strip()
                if clause.startswith(">="):
                    floor = clause[2:].strip()
        if match is None or floor is None:
            raise SystemExit(f"{pyproject}: dependency {dep!r} states no '>=' floor")
        name, extras, _, marker = match.groups()
        pins.append(f"{name}{extras or ''}=={floor}{marker or ''}")
    return pins


if __name__ == "__main__":
    path = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "pyproject.toml"
    )
    print("\n".join(floors(path)))
