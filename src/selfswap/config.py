"""Typed configuration: dataclasses loaded from YAML/JSON files and overridden with
`key.sub=value` strings, so the CLI, the API and training share one definition."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from selfswap.errors import SelfswapError

T = TypeVar("T")


class ConfigError(SelfswapError):
    """A configuration file or override is invalid."""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last: Exception | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                last = exc
        raise last or ConfigError(f"{where}: cannot use {value!r}.")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}.")
        return from_dict(hint, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}.")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}.")
    if hint in (int, float):
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}.") from None
        if hint is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{where}: expected an integer, got {value!r}.")
        return number
    if hint is str:
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass `cls` from a (nested) mapping, checking names and types."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}."
        )
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**values)


def to_dict(config: Any) -> dict:
    """Plain nested dictionary of a config dataclass."""
    return dataclasses.asdict(config)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: '{key}' is not a section.")
    node[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` overrides (values parsed as YAML scalars) to a nested mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value.")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return data


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None
) -> T:
    """Defaults of `cls`, updated by a YAML/JSON file, then by overrides."""
    data = to_dict(cls())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found.")
        try:
            text = path.read_text()
            loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not valid YAML/JSON ({exc}).") from None
        if not isinstance(loaded, dict | None):
            raise ConfigError(f"{path}: the top level must be a mapping.")
        _merge(data, loaded or {})
    apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def add_config_arguments(parser, config_help: str, example: str) -> None:
    """The `--config FILE` and repeatable `--set key=value` options every command with a
    config shares (argparse parser)."""
    parser.add_argument("--config", help=config_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a setting, e.g. {example} (repeatable)",
    )
