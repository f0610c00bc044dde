"""Typed job configs: YAML files, dotted command-line overrides, unknown keys rejected.

Every job config is a pydantic model deriving from `StrictModel` (extra keys forbidden at every
level). `load_config` reads YAML, applies `a.b.c=value` overrides (values parsed as YAML, so
`lr=1e-4`, `flag=true` and `xs=[1,2]` do what one expects) and validates; a typo such as
`train.lrr=1` fails with a message naming `train.lrr` instead of being silently ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

RESOLVED_CONFIG_NAME = "resolved_config.yaml"
_YAML11_MISSED_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AwaitingHumans(RuntimeError):
    """A job stopped where people take over (answers to correct); rerunning it resumes."""


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the offending key."""


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`"train.lr=1e-4"` -> (["train", "lr"], 1e-4). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # an unquoted string YAML cannot read (e.g. 'a: b') is taken literally
    if isinstance(value, str) and _YAML11_MISSED_FLOAT.match(value.strip()):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string; every user means the number
    return parts, value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply dotted overrides to a nested dict (copied); intermediate sections are created."""
    merged = json.loads(json.dumps(data))  # deep copy of plain YAML data
    for item in overrides:
        parts, value = parse_override(item)
        node = merged
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return merged


def describe_errors(error: ValidationError, prefix: str = "") -> str:
    """One line naming each bad key (dotted, under `prefix`) and what is wrong with it."""
    lines = []
    for err in error.errors():
        where = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"])) or "<root>"
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):  # models, dataclasses
            lines.append(f"unknown config key '{where}'")
        else:
            lines.append(f"config key '{where}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def describe_fields(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """`dotted.key: type = default` for every config key of `cls`, nested sections expanded."""
    lines = []
    for name, field in cls.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += describe_fields(annotation, key + ".")
            continue
        kind = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = "(required)" if field.is_required() else f"= {field.get_default(call_default_factory=True)!r}"
        lines.append(f"{key}: {kind} {default}")
    return lines


def validate_config(cls: type[ConfigT], data: dict) -> ConfigT:
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_errors(error)) from None


def load_config(
    cls: type[ConfigT], path: str | Path | None = None, overrides: Sequence[str] = ()
) -> ConfigT:
    """Load `cls` from a YAML file (optional: defaults otherwise) plus dotted overrides."""
    data: dict = {}
    if path is not None:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    return validate_config(cls, apply_overrides(data, overrides))


def save_resolved_config(config: BaseModel, out_dir: str | Path) -> Path:
    """Write the fully resolved config beside a job's outputs, so every result says how it was made."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESOLVED_CONFIG_NAME
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path
