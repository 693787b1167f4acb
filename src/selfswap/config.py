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


@dataclasses.dataclass(frozen=True)
class _Override:
    """A `--set key=value` value: the text as typed and its YAML reading. Text options take
    the text (`--set name=2024` is the name "2024"), the others the YAML value."""

    text: str
    value: Any


def _wants_text(hint: Any, value: Any) -> bool:
    if hint is str:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return str in typing.get_args(hint) and value is not None
    return False


def _known_detectors() -> list[str]:
    from selfswap.face.detect import DETECTORS

    return ["default", *DETECTORS]


def _known_embeddings() -> list[str]:
    from selfswap.face.analyzer import EMBEDDINGS

    return list(EMBEDDINGS)


#: Text options that name something from a registry, by field name (the same meaning in
#: every config that has them): checked when the config is read, so a typo is one sentence
#: before any work starts.
NAMED_CHOICES: dict[str, typing.Callable[[], list[str]]] = {
    "detector": _known_detectors,
    "embedding": _known_embeddings,
}


def check_choice(where: str, value: Any, known: list[str]) -> None:
    """Raise `ConfigError` unless `value` is one of `known`."""
    if value not in known:
        raise ConfigError(f"{where}: unknown value {value!r}; use one of {', '.join(known)}.")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if isinstance(value, _Override):
        value = value.text if _wants_text(hint, value.value) else value.value
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
        if isinstance(value, (bool, list, dict)):
            raise ConfigError(f"{where}: expected a number, got {value!r}.")
        try:
            number = hint(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected a number, got {value!r}.") from None
        if hint is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{where}: expected an integer, got {value!r}.")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r} (quote it in YAML).")
        return value
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
    for key, value in values.items():
        if key in NAMED_CHOICES and isinstance(value, str):
            check_choice(f"{where}.{key}", value, NAMED_CHOICES[key]())
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # the dataclass's own checks
        raise ConfigError(f"{where}: {exc}") from None


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
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_path(data, key.strip(), _Override(raw, value))
    return data


def read_config_file(path: str | Path) -> dict:
    """The mapping in a YAML (or, by its suffix, JSON) config file; one clear
    `ConfigError` for a file that cannot be read or parsed, or is not a mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"{path}: not valid YAML/JSON ({reason}).") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}).") from None
    if not isinstance(loaded, dict | None):
        raise ConfigError(f"{path}: the top level must be a mapping.")
    return loaded or {}


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None
) -> T:
    """Defaults of `cls`, updated by a YAML/JSON file, then by overrides."""
    data = to_dict(cls())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found.")
        _merge(data, read_config_file(path))
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


def _ranged(low: float, high: float):
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = low - 1.0
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a number from {low:g} to {high:g}, got {text!r}"
            )
        return value

    return parse


def add_dataclass_arguments(parser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One command-line flag for each field of dataclass `cls` whose metadata names a `flag`
    (with its `help`, `choices` or `range`). The flags default to unset, so that
    `config_from_args` can tell a flag given from one left at its default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = f.metadata.get("flag")
        if not flag or f.name in skip:
            continue
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": None,
            "help": f"{f.metadata.get('help', '')} (default: {f.default})",
        }
        if "choices" in f.metadata:
            kwargs["choices"] = list(f.metadata["choices"])
        elif "range" in f.metadata:
            low, high = f.metadata["range"]
            kwargs["type"], kwargs["metavar"] = _ranged(low, high), f"{low:g}..{high:g}"
        elif hints[f.name] in (int, float):
            kwargs["type"] = hints[f.name]
        parser.add_argument(flag, **kwargs)


def config_from_args(cls: type[T], args: Any) -> T:
    """`cls` from its defaults, `args.config` (a file), `args.overrides` (`--set`), then the
    flags `add_dataclass_arguments` added that were given (a flag wins over the file)."""
    config = load_config(cls, getattr(args, "config", None), getattr(args, "overrides", None))
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }
    return from_dict(cls, {**to_dict(config), **given}) if given else config
