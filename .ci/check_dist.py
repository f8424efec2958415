"""Check the built wheel and sdist in DIST: names, version, and the files each must carry.

python .ci/check_dist.py dist/
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (ROOT / "ffmpeg_tasks/_version.py").read_text(), re.M
)[1]  # type: ignore[index]

WHEEL_MUST = [
    "ffmpeg_tasks/__init__.py",
    "ffmpeg_tasks/py.typed",
    "ffmpeg_tasks/_version.py",
    f"ffmpeg_tasks-{VERSION}.dist-info/licenses/LICENSE",
    f"ffmpeg_tasks-{VERSION}.dist-info/entry_points.txt",
]
SDIST_MUST = [
    "LICENSE",
    "CHANGELOG.md",
    "README.md",
    "pyproject.toml",
    "ffmpeg_tasks/py.typed",
    "tests/conftest.py",
    "tests/servers.py",
    "tests/store_helpers.py",
    "tests/worker_proc.py",
    "tests/security/__init__.py",
    "examples/http_service.py",
]
METADATA_MUST = [
    f"Version: {VERSION}",
    "License-Expression: MIT",
    "License-File: LICENSE",
    "Requires-Python: >=3.11",
    "Classifier: Programming Language :: Python :: 3.11",
    "Classifier: Operating System :: POSIX :: Linux",
    "Provides-Extra: sandbox",
]


def main(dist: Path) -> int:
    problems: list[str] = []
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if [w.name for w in wheels] != [f"ffmpeg_tasks-{VERSION}-py3-none-any.whl"]:
        problems.append(f"expected one wheel of version {VERSION}, found {wheels}")
    if [s.name for s in sdists] != [f"ffmpeg_tasks-{VERSION}.tar.gz"]:
        problems.append(f"expected one sdist of version {VERSION}, found {sdists}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        metadata = whl.read(f"ffmpeg_tasks-{VERSION}.dist-info/METADATA").decode()
    problems += [f"wheel lacks {n}" for n in WHEEL_MUST if n not in names]
    problems += [f"wheel carries {n}" for n in names if n.startswith(("tests/", "benchmarks/"))]
    problems += [f"wheel METADATA lacks {line!r}" for line in METADATA_MUST if line not in metadata]
    with tarfile.open(sdists[0]) as tar:
        prefix = f"ffmpeg_tasks-{VERSION}/"
        members = {m.name.removeprefix(prefix) for m in tar.getmembers()}
    problems += [f"sdist lacks {n}" for n in SDIST_MUST if n not in members]
    in_git = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*.py")}
    problems += [f"sdist lacks {n}" for n in sorted(in_git - members) if "__pycache__" not in n]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"wheel and sdist of {VERSION}: {len(names)} and {len(members)} entries, contents ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
