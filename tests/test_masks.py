"""SAMAE masking on real faces: face region, shape-agnostic mask, random mesh scaling,
perforation confusion, swap mask, determinism."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from selfswap.face.align import alignment_matrix
from selfswap.geometry.mesh import Geometry, face_geometry
from selfswap.geometry.render import Renderer
from selfswap.samae import (
    MaskBuilder,
    MaskConfig,
    MeshScalingConfig,
    PerforationConfig,
    SamaeConfig,
    face_region,
    perforate,
    sample_mesh_scaling,
    shape_agnostic_mask,
    swap_mask,
)

R = 128


def largest(analyzer, image):
    faces = analyzer.analyze(image)
    assert faces
    return max(faces, key=lambda f: f.width)


@pytest.fixture(scope="module")
def target(astronaut, analyzer_no_id):
    face = largest(analyzer_no_id, astronaut)
    return face_geometry([face], alignment_matrix(face.landmarks68, R)[None])


@pytest.fixture(scope="module")
def source(grace_hopper, analyzer_no_id):
    return largest(analyzer_no_id, grace_hopper)


@pytest.fixture(scope="module")
def renderer():
    with Renderer(R) as r:
        yield r


def batch(geometry: Geometry, n: int) -> Geometry:
    return Geometry(*(np.repeat(a, n, axis=0) for a in (
        geometry.shape, geometry.expression, geometry.camera
    )))  # fmt: skip


def contains(outer: np.ndarray, inner: np.ndarray) -> bool:
    return bool(((inner > 0.5) <= (outer > 0.5)).all())


def test_face_region_fills_the_mouth_and_eyes(renderer, target):
    silhouette = renderer.silhouette(target.vertices(renderer.mesh))
    region = face_region(silhouette)
    assert region.shape == silhouette.shape and region.dtype == np.float32
    assert contains(region, silhouette)
    assert region.sum() > silhouette.sum()  # the open mouth (she smiles) is filled
    holes = cv2.connectedComponents((1 - region[0, 0]).astype(np.uint8))[0]
    assert holes == 2  # background only: no hole left inside


@pytest.mark.parametrize(
    "config",
    [MaskConfig(), MaskConfig(hull=False), MaskConfig(margin=0.0, smooth=0.1),
     MaskConfig(margin=0.12, smooth=0.0), MaskConfig(enabled=False)],
)  # fmt: skip
def test_shape_agnostic_mask_contains_the_face_region(renderer, target, config):
    builder = MaskBuilder(renderer, SamaeConfig(mask=config))
    masks = builder.training(batch(target, 6), rng=3)
    regions = np.concatenate([masks.face_region, masks.mask_region])
    agnostic = shape_agnostic_mask(regions, config)
    assert contains(agnostic, regions)
    if config.enabled and config.margin > 0:
        # the outline is pushed away from the true contour: it does not trace it
        assert agnostic.sum() > 1.2 * regions.sum()
        for mask, region in zip(agnostic[:, 0], regions[:, 0], strict=True):
            edge = mask.astype(np.uint8) - cv2.erode(mask.astype(np.uint8), np.ones((3, 3)))
            outside = cv2.distanceTransform(
                (1 - region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
            )
            inside_crop = edge.copy()
            inside_crop[[0, -1], :] = inside_crop[:, [0, -1]] = 0  # the crop border cuts
            gaps = outside[inside_crop > 0]
            assert np.median(gaps) >= 0.6 * config.margin * R


def test_mesh_scaling_changes_the_mask_within_the_configured_ranges(renderer, target):
    scaling = MeshScalingConfig(probability=1.0)
    config = SamaeConfig(scaling=scaling, perforation=PerforationConfig(enabled=False))
    masks = MaskBuilder(renderer, config).training(batch(target, 12), rng=11)
    f = masks.scaling
    for name, column in (("width", 0), ("height", 1), ("jaw_width", 2), ("jaw_height", 3)):
        lo, hi = getattr(scaling, name)
        assert (f[:, column] >= lo).all() and (f[:, column] <= hi).all()
    ratio = masks.mask_region.sum((1, 2, 3)) / masks.face_region.sum((1, 2, 3))
    lo, hi = scaling.bounds
    assert (ratio >= lo * 0.97).all() and (ratio <= hi * 1.03).all(), ratio
    expected = f[:, 0] * f[:, 1]  # the whole-face factors dominate the area
    assert np.corrcoef(ratio, expected)[0, 1] > 0.7
    plain = shape_agnostic_mask(masks.face_region[:1]).sum()
    areas = masks.mask.sum((1, 2, 3))
    assert areas.min() < 0.97 * plain and areas.max() > 1.03 * plain  # smaller and larger
    # switched off: the mask comes from the true mesh
    off = SamaeConfig(
        scaling=MeshScalingConfig(enabled=False), perforation=PerforationConfig(enabled=False)
    )
    unscaled = MaskBuilder(renderer, off).training(batch(target, 2), rng=11)
    np.testing.assert_array_equal(unscaled.scaling, 1.0)
    np.testing.assert_array_equal(unscaled.mask_region, unscaled.face_region)


def test_mesh_scaling_can_keep_the_face_covered(renderer, target):
    scaling = MeshScalingConfig(probability=1.0, width=(0.8, 0.8), keep_face_covered=True)
    masks = MaskBuilder(renderer, SamaeConfig(scaling=scaling)).training(target, rng=0)
    assert contains(masks.unperforated, masks.face_region)


def test_perforations_stay_within_their_configured_amount(renderer, target):
    config = PerforationConfig(probability=1.0, count=(2, 5), radius=(0.02, 0.05))
    builder = MaskBuilder(
        renderer, SamaeConfig(scaling=MeshScalingConfig(enabled=False), perforation=config)
    )
    masks = builder.training(batch(target, 16), rng=5)
    holes, unperforated, region = masks.perforations, masks.unperforated, masks.face_region
    assert contains(unperforated, holes)
    np.testing.assert_array_equal(masks.mask, unperforated * (1 - holes))
    assert (holes.sum((1, 2, 3)) > 0).all()  # probability 1: every sample is perforated
    assert (holes.sum((1, 2, 3)) <= config.max_area * unperforated.sum((1, 2, 3))).all()
    reach = (config.band + config.radius[1]) * R + 2
    for hole, face in zip(holes[:, 0], region[:, 0], strict=True):
        assert cv2.connectedComponents(hole.astype(np.uint8))[0] - 1 <= config.count[1]
        outside = cv2.distanceTransform(
            (1 - face).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
        )
        assert outside[hole > 0].max() <= reach  # near the face, never far out
        assert (hole * face).sum() > 0  # real face pixels become visible
    # never, or switched off: no perforation
    for off in (dataclasses.replace(config, probability=0.0), PerforationConfig(enabled=False)):
        mask, none = perforate(unperforated, region, off, rng=5)
        assert none.sum() == 0 and np.array_equal(mask, unperforated)
    # with the default probability, only some samples are perforated
    default = MaskBuilder(renderer).training(batch(target, 16), rng=5)
    share = (default.perforations.sum((1, 2, 3)) > 0).mean()
    assert 0.1 < share < 0.9


def test_same_seed_gives_identical_masks(renderer, target):
    import torch

    builder = MaskBuilder(renderer)
    geometry = batch(target, 4)
    a, b = builder.training(geometry, rng=42), builder.training(geometry, rng=42)
    for field in ("mask", "unperforated", "perforations", "mask_region", "scaling"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = builder.training(geometry, rng=43)
    assert not np.array_equal(a.mask, c.mask)
    t1 = builder.training(geometry, rng=torch.Generator().manual_seed(1))
    t2 = builder.training(geometry, rng=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(t1.mask, t2.mask)
    np.testing.assert_array_equal(sample_mesh_scaling(MeshScalingConfig(), 3, None), 1.0)


def test_swap_mask_contains_target_region_and_source_mesh(renderer, target, source):
    builder = MaskBuilder(renderer)
    swap = builder.swap(target, source.shape)
    assert contains(swap.mask, swap.target_region)
    assert contains(swap.mask, swap.source_region)
    assert contains(swap.source_region, swap.silhouette)
    # the swap geometry is the source's shape: its silhouette differs from the target's
    target_sil = renderer.silhouette(target.vertices(renderer.mesh))
    assert not np.array_equal(target_sil, swap.silhouette)
    # deterministic, and the same as the plain function
    again = builder.swap(target, source.shape)
    np.testing.assert_array_equal(swap.mask, again.mask)
    np.testing.assert_array_equal(swap_mask(target_sil, swap.silhouette), swap.mask)


def test_config_round_trip_and_validation():
    config = SamaeConfig(perforation=PerforationConfig(count=(0, 2)))
    data = config.to_dict()
    assert data["perforation"]["count"] == [0, 2]
    assert SamaeConfig.from_dict(data) == config
    assert SamaeConfig.from_dict({}) == SamaeConfig()
    with pytest.raises(ValueError, match="unknown"):
        SamaeConfig.from_dict({"mask": {"margins": 0.1}})
    with pytest.raises(ValueError):
        SamaeConfig.from_dict({"scaling": {"width": [1.2, 0.8]}})


@pytest.mark.lfw
def test_lfw_masks_contain_their_faces(shared_data, analyzer_no_id, renderer):
    from PIL import Image

    paths = sorted((shared_data / "lfw").glob("*/*_0001.jpg"))[::400][:5]
    geometries = []
    for path in paths:
        faces = analyzer_no_id.analyze(np.asarray(Image.open(path).convert("RGB")))
        if faces:
            f = max(faces, key=lambda x: x.width)
            geometries.append(face_geometry([f], alignment_matrix(f.landmarks68, R)[None]))
    assert len(geometries) >= 3
    geometry = Geometry(*(np.concatenate([getattr(g, k) for g in geometries]) for k in (
        "shape", "expression", "camera"
    )))  # fmt: skip
    masks = MaskBuilder(renderer, SamaeConfig(scaling=MeshScalingConfig(enabled=False)))
    out = masks.training(geometry, rng=0)
    assert contains(out.unperforated, out.face_region)
    swap = masks.swap(geometry, geometry.shape[::-1])
    assert contains(swap.mask, swap.target_region) and contains(swap.mask, swap.source_region)
