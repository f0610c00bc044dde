"""Plug-ins (benchmarks, annotators) by name: Python entry points, the way installed packages
extend each other. The scene world registers its own in `pyproject.toml`; a user's package does
the same in its own, or names a class directly as `module:Name`."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

BENCHMARKS = "rlhfv_ray.benchmarks"
ANNOTATORS = "rlhfv_ray.annotators"


def registered(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def resolve(group: str, name: str):
    """The object registered as `name` in `group`, or the `module:attr` that `name` spells."""
    if ":" in name:
        module, attr = name.split(":", 1)
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot load {name!r}: {error}") from None
    for ep in entry_points(group=group, name=name):
        return ep.load()
    raise ValueError(f"unknown {group.rsplit('.', 1)[-1][:-1]} {name!r}; registered: {registered(group)} "
                     "(or give module:Class)")
