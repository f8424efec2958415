"""The command policy: parse a user's ffmpeg command and allow only what is known to be safe.

>>> from ffmpeg_tasks.policy import CommandPolicy
>>> plan = CommandPolicy().plan("-i in.mp4 -c:v libx264 -crf 23 out.mp4",
...                             inputs={"in.mp4"}, outputs={"out.mp4"})
>>> plan.args[:3]
('-nostdin', '-y', '-hide_banner')
"""

from __future__ import annotations

from .command_plan import CommandPlan, InputTiming, OutputTiming, Timing
from .filters import FilterCall, FilterGraph, FilterRule, parse_filtergraph
from .limits import CommandLimits
from .options import OptionSpec
from .policy import CommandPolicy
from .tokens import tokenize
from .values import parse_duration

__all__ = [
    "CommandLimits",
    "CommandPlan",
    "CommandPolicy",
    "FilterCall",
    "FilterGraph",
    "FilterRule",
    "InputTiming",
    "OptionSpec",
    "OutputTiming",
    "Timing",
    "parse_duration",
    "parse_filtergraph",
    "tokenize",
]


def __getattr__(name: str) -> object:
    from . import limits

    return limits.__getattr__(name)  # Limits: the old name of CommandLimits, with a warning
