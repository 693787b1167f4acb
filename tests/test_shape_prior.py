"""The source shape prior: the estimate's arithmetic, the variances behind it recovered
from people with known spread, and what it does to the shape of a real face."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from conftest import REPO
from selfswap.errors import ModelFileError
from selfswap.face import shape_prior as module
from selfswap.face.shape_prior import ShapePrior, shape_prior


def _script():
    spec = importlib.util.spec_from_file_location(
        "shape_prior_script", REPO / "scripts" / "shape_prior.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_shipped_prior_says_one_photo_is_a_loose_fit():
    prior = shape_prior()
    assert prior.mean.shape == prior.between.shape == prior.within.shape == (40,)
    share = prior.within / (prior.within + prior.between)
    # measured on LFW train + the CelebA subset: photo-to-photo spread is 37-79 % of it all
    assert share.min() > 0.3 and share.max() < 0.85 and 0.55 < share.mean() < 0.7
    one, three = prior.kept(1), prior.kept(3)
    assert np.all((one > 0) & (one < three) & (three < 1))


def test_estimate_pulls_each_coefficient_by_its_share():
    prior = ShapePrior(np.array([1.0, -2.0]), np.array([1.0, 3.0]), np.array([1.0, 1.0]))
    photo = np.array([3.0, 2.0])
    # one photo keeps between / (between + within) of its deviation: 1/2 and 3/4
    assert prior.estimate(photo[None]) == pytest.approx([2.0, 1.0])
    # two photos: the average's deviation, with within halved (2/3 and 6/7 kept)
    two = np.array([[3.0, 2.0], [5.0, 6.0]])
    assert prior.estimate(two) == pytest.approx([1 + 3 * 2 / 3, -2 + 6 * 6 / 7])
    assert prior.estimate(two, strength=0.0) == pytest.approx(two.mean(0))
    # halfway strength keeps halfway between the plain average and the estimate
    assert prior.estimate(photo[None], 0.5) == pytest.approx([2.5, 1.5])


def test_variances_recover_a_known_spread():
    rng = np.random.default_rng(0)
    between, within = np.array([4.0, 1.0, 0.25]), np.array([1.0, 2.0, 0.5])
    people = np.repeat(np.arange(3000), 3)
    centres = rng.normal(0, np.sqrt(between), (3000, 3))
    shapes = centres[people] + rng.normal(0, np.sqrt(within), (len(people), 3))
    found_between, found_within = _script().variances(shapes, people)
    assert found_within == pytest.approx(within, rel=0.05)
    assert found_between == pytest.approx(between, rel=0.1)


def test_a_damaged_table_is_one_clear_error(tmp_path, monkeypatch):
    broken = tmp_path / "shape_prior.json"
    broken.write_text(json.dumps({"mean": [0.0, 1.0], "between": [1.0], "within": [1.0, 1.0]}))
    monkeypatch.setattr(module, "TABLE", broken)
    shape_prior.cache_clear()
    try:
        with pytest.raises(ModelFileError, match="missing or damaged; reinstall selfswap"):
            shape_prior()
        broken.unlink()
        with pytest.raises(ModelFileError, match="missing or damaged"):
            shape_prior()
    finally:
        shape_prior.cache_clear()


@pytest.fixture(scope="module")
def swapper():
    from selfswap.api import Swapper

    return Swapper.load("default")


def test_the_source_shape_of_a_real_face(swapper, grace_hopper):
    """One photo of Grace Hopper: the swap's shape is the prior's estimate, nearer the
    average face than her photo's own fit; with the option off, it is that fit."""
    fit = swapper.engine.analyzer.analyze(grace_hopper)[0].shape
    plain = swapper.using(swapper.config.replace(shape_prior=0.0)).identity(grace_hopper)
    assert plain.shape == pytest.approx(fit, rel=1e-5)
    prior = shape_prior()
    estimated = swapper.identity(grace_hopper).shape
    assert estimated == pytest.approx(prior.mean + prior.kept(1) * (fit - prior.mean), rel=1e-4)
    spread = np.sqrt(prior.between + prior.within)
    assert np.linalg.norm((estimated - prior.mean) / spread) < 0.7 * np.linalg.norm(
        (fit - prior.mean) / spread
    )
