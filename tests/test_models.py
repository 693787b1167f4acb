"""Model registry: verification and the errors that name the fix."""

from __future__ import annotations

import shutil

import pytest

from selfswap.errors import ModelFileError
from selfswap.models import catalog, model_path, verify
from selfswap.models.registry import expected_path


def test_every_model_is_present_and_verified():
    assert set(verify().values()) == {"ok"}


def test_catalog_entries_are_complete():
    for spec in catalog().values():
        assert len(spec.sha256) == 64 and spec.size > 0 and spec.license
        assert spec.wheel if spec.source == "wheel" else spec.package


def test_missing_file_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSWAP_HOME", str(tmp_path))
    with pytest.raises(ModelFileError, match="missing.*selfswap models pull"):
        model_path("tddfa_param_stats")


def test_corrupt_file_is_refused(tmp_path, monkeypatch):
    good = model_path("tddfa_param_stats")
    monkeypatch.setenv("SELFSWAP_HOME", str(tmp_path))
    target = expected_path("tddfa_param_stats")
    target.parent.mkdir(parents=True)
    shutil.copy(good, target)
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    assert verify(["tddfa_param_stats"]) == {"tddfa_param_stats": "corrupt"}
    with pytest.raises(ModelFileError, match="corrupt.*selfswap models pull"):
        model_path("tddfa_param_stats")


def test_unknown_model():
    with pytest.raises(ModelFileError, match="Unknown model"):
        model_path("no_such_model")
