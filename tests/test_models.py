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


# --- swap model files: the weights digest ------------------------------------------------


def _default_weights() -> tuple[dict, dict]:
    from safetensors import safe_open

    from selfswap.swap import bundle

    with safe_open(str(bundle.packaged("default")), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def test_shipped_default_model_carries_a_matching_digest():
    from selfswap.swap import bundle

    meta, weights = _default_weights()
    assert meta[bundle.DIGEST_KEY] == bundle.tensor_digest(weights)


def test_flipped_or_nan_weights_are_refused_with_the_fix(tmp_path):
    import torch
    from safetensors.torch import save_file

    from selfswap.swap import bundle

    data = bytearray(bundle.packaged("default").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of the tensor data
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt.*checksum.*selfswap export"):
        bundle.load_generator_side(flipped)

    meta, weights = _default_weights()
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")
    nan = tmp_path / "nan.safetensors"
    save_file(weights, str(nan), meta)
    with pytest.raises(ModelFileError, match="corrupt.*selfswap export"):
        bundle.load_generator_side(nan)
    # without a digest (files exported before it existed) NaN is still caught
    save_file(weights, str(nan), {k: v for k, v in meta.items() if k != bundle.DIGEST_KEY})
    with pytest.raises(ModelFileError, match="NaN or infinite.*selfswap export"):
        bundle.load_generator_side(nan)
    assert torch.isnan(weights[name]).any()


def test_model_without_digest_still_loads(tmp_path):
    from safetensors.torch import save_file

    from selfswap.swap import bundle

    meta, weights = _default_weights()
    old = tmp_path / "old.safetensors"
    save_file(weights, str(old), {k: v for k, v in meta.items() if k != bundle.DIGEST_KEY})
    model, config, _ = bundle.load_generator_side(old)
    assert config.size == 128 and bundle.parameter_count(model) > 10_000_000


def test_broken_metadata_is_one_sentence(tmp_path):
    import json

    import torch
    from safetensors.torch import save_file

    from selfswap.swap import bundle

    meta, weights = _default_weights()
    plain = {k: v for k, v in meta.items() if k != bundle.DIGEST_KEY}
    cases = {
        "bad-json": (weights, {**plain, "config": "{not json"}, "damaged training config"),
        "no-config": (weights, {"format": bundle.FORMAT}, "no training configuration"),
        "foreign": ({"x.weight": torch.zeros(2)}, plain, "does not hold the swap model"),
        "size-0": (weights, {**plain, "config": json.dumps({"size": 0})}, "damaged"),
    }
    for name, (tensors, metadata, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata)
        with pytest.raises(ModelFileError, match=message):
            bundle.load_generator_side(path)


def test_packaged_model_names_reinstall_as_the_fix(tmp_path):
    from selfswap.swap.bundle import _fix, packaged

    assert "reinstall selfswap" in _fix(packaged("default"))
    assert "selfswap export" in _fix(tmp_path / "m.safetensors")


@pytest.mark.slow
def test_export_writes_a_digest_that_load_checks(train_faces, tmp_path):
    import torch
    from safetensors import safe_open

    from conftest import tiny_train_config
    from selfswap.swap import bundle
    from selfswap.train.loop import train

    torch.set_num_threads(1)
    run = tmp_path / "run"
    train(tiny_train_config(train_faces, run, "steps=2", "checkpoint.every=2"), log=lambda *_: None)
    out = bundle.export(run, tmp_path / "m.safetensors")
    with safe_open(str(out), framework="pt") as f:
        digest = f.metadata()[bundle.DIGEST_KEY]
        assert digest == bundle.tensor_digest({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    bundle.load_generator_side(out)
