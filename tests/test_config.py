"""Typed configuration from files and overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from selfswap.config import ConfigError, load_config


@dataclass
class Inner:
    rate: float = 0.5
    names: list[str] = field(default_factory=lambda: ["a"])


@dataclass
class Outer:
    size: int = 128
    enabled: bool = True
    label: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults():
    assert load_config(Outer) == Outer()


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("size: 256\ninner:\n  rate: 0.25\n")
    cfg = load_config(Outer, path, ["inner.rate=0.75", "enabled=false", "inner.names=[x, y]"])
    assert cfg == Outer(size=256, enabled=False, inner=Inner(rate=0.75, names=["x", "y"]))


@pytest.mark.parametrize(
    "override, message",
    [
        ("sise=3", "unknown option"),
        ("size=big", "expected a number"),
        ("enabled=maybe", "true/false"),
        ("size", "key.sub=value"),
        ("inner.rate.x=1", "not a section"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, [override])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: [1,\n")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(Outer, bad)
