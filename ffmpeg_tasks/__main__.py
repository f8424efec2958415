"""``python -m ffmpeg_tasks``: the ``ffmpeg-tasks`` command line (see :mod:`ffmpeg_tasks.cli`)."""

import sys

from .cli import main

sys.exit(main())
