"""The Python API, exported model files, the shipped default model and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_train_config
from selfswap.api import Swapper
from selfswap.demo import report, run_demo
from selfswap.errors import SelfswapError
from selfswap.provenance import is_watermarked
from selfswap.samples import sample_path
from selfswap.swap import bundle
from selfswap.train.loop import train


@pytest.fixture(scope="module")
def run_folder(train_faces, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("api-run") / "run"
    torch.set_num_threads(1)
    train(tiny_train_config(train_faces, run, "steps=2", "checkpoint.every=2"), log=lambda *_: None)
    return run


def test_export_round_trip_is_fp16_close(run_folder, tmp_path, astronaut, grace_hopper):
    out = bundle.export(run_folder, tmp_path / "m.safetensors")
    from_run, exported = Swapper.load(run_folder), Swapper.load(out)
    for (name, a), (_, b) in zip(
        from_run.engine.model.state_dict().items(), exported.engine.model.state_dict().items()
    ):
        assert torch.allclose(a, b, rtol=2e-3, atol=1e-4), name
    x = from_run.swap_image(grace_hopper, astronaut).image.astype(int)
    y = exported.swap_image(grace_hopper, astronaut).image.astype(int)
    assert x.shape == y.shape and np.abs(x - y).mean() < 0.5
    assert not list(tmp_path.glob("*.part"))


def test_damaged_or_unknown_models_are_refused(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(SelfswapError, match="not a readable model file|not a selfswap"):
        Swapper.load(broken)
    with pytest.raises(SelfswapError, match="Unknown model 'nonesuch'"):
        Swapper.load("nonesuch")
    with pytest.raises(SelfswapError, match="does not exist"):
        Swapper.load(tmp_path / "missing.safetensors")


def test_api_accepts_paths_lists_and_reference_photos(run_folder, astronaut, grace_hopper):
    swapper = Swapper.load(run_folder)
    hopper_path = sample_path("grace_hopper")
    result = swapper.swap_image([hopper_path, grace_hopper], sample_path("astronaut"))
    assert result.swapped == [0] and result.image.shape == astronaut.shape
    pair = np.concatenate([astronaut, grace_hopper[:512, :512]], axis=1)
    by_reference = swapper.swap_image(astronaut, pair, faces=hopper_path)
    assert by_reference.swapped == [1]
    assert swapper.swap_image(astronaut, pair, faces=0).swapped == [0]


def test_default_model_is_shipped_small_and_fp16():
    path = bundle.packaged("default")
    assert path.is_file(), "the default model must be committed under src/selfswap/weights/"
    assert path.stat().st_size <= 25_000_000
    model, config, _ = bundle.load_generator_side(path)
    assert config.mode == "samae" and config.size == 128
    assert bundle.parameter_count(model) > 10_000_000


def test_demo_swaps_move_identity_towards_the_source(tmp_path):
    """Issue #6's demo criterion with the shipped default model: each swap is closer to its
    source person than the unswapped target was."""
    out = tmp_path / "demo.png"
    swaps = run_demo(out, "default")
    assert [(s.source_name, s.target_name) for s in swaps] == [
        ("Grace Hopper", "astronaut"),
        ("astronaut", "Grace Hopper"),
    ]
    for s in swaps:
        assert s.to_source > s.before, (s.source_name, s.to_source, s.before)
        assert s.swapped.shape == s.target.shape
        # the independent judge's view is reported too: regression values for the shipped
        # model (0.698 and 0.718 with bilinear resampling of the paste and the source detail;
        # the previous default: 0.653 and 0.525, and 0.118 and 0.147 before the
        # source's detail and the seam match; the demo compares with the very photo the
        # source's texture and detail come from, so these overstate what another photo of
        # the person would score: see docs/results; the astronaut's smile onto Grace
        # Hopper's closed lips scored 0.748 before her own mouth was kept there too, and
        # 0.729 and 0.687 before the mouth took half of its surroundings too)
        assert all(-1 <= v <= 1 for v in s.judged)
    judged_to_source = [s.judged[0] for s in swaps]
    np.testing.assert_allclose(judged_to_source, [0.745, 0.678], atol=0.03)
    assert "SFace" in report(swaps)
    from selfswap.io.images import load_image

    sheet = load_image(out)
    assert sheet.shape[0] > 600 and sheet.shape[1] > 900
    assert is_watermarked(sheet)


def test_source_with_several_faces_uses_the_largest_and_says_so(
    run_folder, astronaut, grace_hopper
):
    import cv2

    small_hopper = cv2.resize(grace_hopper[:512, :512], (160, 160), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 768, 3), 255, np.uint8)
    canvas[:, :512], canvas[176:336, 560:720] = astronaut, small_hopper
    swapper = Swapper.load(run_folder)
    result = swapper.swap_image(canvas, grace_hopper)
    assert result.notes == ["source photo #1 shows 2 faces; using the largest."]
    alone = swapper.engine.source_identity([astronaut]).embedding
    both = swapper.engine.source_identity([canvas]).embedding
    assert np.linalg.norm(alone - both) < 0.1


def test_color_match_pulls_the_face_towards_the_target_colours(run_folder, astronaut, grace_hopper):
    swapper = Swapper.load(run_folder)
    face = swapper.engine.fast_analyzer.analyze(astronaut)[0]
    x0, y0, x1, y1 = face.box.astype(int)
    inner = np.s_[
        y0 + (y1 - y0) // 4 : y1 - (y1 - y0) // 4, x0 + (x1 - x0) // 4 : x1 - (x1 - x0) // 4
    ]

    def colour_gap(image: np.ndarray) -> float:
        return float(
            np.abs(
                image[inner].reshape(-1, 3).mean(0) - astronaut[inner].reshape(-1, 3).mean(0)
            ).sum()
        )

    plain = swapper.swap_image(grace_hopper, astronaut).image
    matched = swapper.swap_image(grace_hopper, astronaut, color_match=1.0).image
    assert colour_gap(matched) < colour_gap(plain)
    assert np.abs(matched.astype(int) - plain)[inner].mean() > 0.5


def test_face_paste_changes_less_than_the_whole_mask(run_folder, astronaut, grace_hopper):
    changed = {}
    for paste in ("face", "mask"):
        engine = Swapper.load(run_folder, paste=paste).engine
        out = engine.swap_image([grace_hopper], astronaut, watermark=False).image
        changed[paste] = np.abs(out.astype(int) - astronaut).max(2) > 0
    face, mask = changed["face"], changed["mask"]
    assert 0 < face.sum() < mask.sum()
    assert (face & ~mask).sum() < 0.01 * face.sum()
    with pytest.raises(SelfswapError, match="paste must be"):
        Swapper.load(run_folder, paste="everything")


def test_seesaw_models_see_the_whole_target(train_faces, tmp_path, astronaut, grace_hopper):
    """A seesaw generator was trained on the unmasked target; swapping must show it that."""
    run = tmp_path / "seesaw"
    config = tiny_train_config(train_faces, run, "mode=seesaw", "steps=2", "checkpoint.every=2")
    train(config, log=lambda *_: None)
    calls = []
    for model, expected in ((run, False), (None, True)):
        engine = Swapper.load(model or bundle.packaged("default")).engine
        forward = engine.model.forward
        engine.model.forward = lambda *a, _f=forward, **k: (
            calls.append(k.get("masked")) or _f(*a, **k)
        )
        engine.swap_image([grace_hopper], astronaut)
        assert calls.pop() is expected


def test_swapper_takes_its_defaults_from_swap_config(run_folder, astronaut, grace_hopper):
    from selfswap.swap.options import SwapConfig

    pair = np.concatenate([astronaut, grace_hopper[:512, :512]], axis=1)
    configured = Swapper.from_config(SwapConfig(model=str(run_folder), faces="1", color_match=1))
    assert configured.config.paste == "face" and configured.engine.paste_region == "face"
    by_config = configured.swap_image(astronaut, pair)
    explicit = Swapper.load(run_folder).swap_image(astronaut, pair, faces=[1], color_match=1.0)
    assert by_config.swapped == explicit.swapped == [1]
    assert np.array_equal(by_config.image, explicit.image)
    with pytest.raises(SelfswapError, match="faces must be"):
        configured.swap_image(astronaut, pair, faces="left")
