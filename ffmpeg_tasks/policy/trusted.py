"""Trusted mode's view of filters: unknown ones allowed, those that open files still checked."""

# ruff: noqa: SIM905

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .filters import FilterRule, OptionKind
from .vocabulary import is_file_option

__all__ = ["AnyOption", "TrustedRules"]


class TrustedRules(dict[str, FilterRule]):
    """Filter rules for trusted mode: unknown filters allowed, file options still checked."""

    def __init__(self, base: Mapping[str, FilterRule]) -> None:
        super().__init__(base)

    def get(self, key: str, default: Any = None) -> FilterRule | None:  # type: ignore[override]
        if key in DENIED_TRUSTED:
            return None
        rule = super().get(key)
        if rule is None:
            return FilterRule(key, AnyOption(), tuple(f"#{i}" for i in range(64)))
        return FilterRule(rule.name, AnyOption(rule.options), rule.positional, rule.aliases)


DENIED_TRUSTED = frozenset("movie amovie sendcmd asendcmd zmq azmq ladspa lv2 frei0r".split())


class AnyOption(dict[str, OptionKind]):
    def __init__(self, base: Mapping[str, OptionKind] | None = None) -> None:
        super().__init__(base or {})

    def get(self, key: str, default: Any = None) -> OptionKind:
        found = super().get(key)
        if found is not None and found != "deny":
            return found
        return "deny" if is_file_option(key) else "trusted"
