"""A static HTTP file server for the benchmarks, run as its own process.

``python -m benchmarks.fileserver DIR PORT`` serves ``DIR`` at ``/media/<name>`` with
aiohttp's ``FileResponse`` (sendfile, ``Range`` and ``Accept-Ranges: bytes``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def main(argv: list[str]) -> None:
    root, port = Path(argv[0]), int(argv[1])
    app = web.Application()
    app.router.add_static("/media/", root, show_index=False, follow_symlinks=False)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(sys.argv[1:])
