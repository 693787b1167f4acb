"""The source person's 3DMM face shape from one or a few photos, as an empirical-Bayes
estimate: one photo's fit varies from photo to photo of the same person by more than half
as much as faces differ (`shape_prior.json`, measured on the training sets by
`scripts/shape_prior.py`), so each coefficient of the photos' average is pulled towards the
average face by the share of its variance that lies between photos: more for one photo,
less for several."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from selfswap.errors import ModelFileError

TABLE = Path(__file__).with_name("shape_prior.json")
FIELDS = ("mean", "between", "within")


@dataclass(frozen=True)
class ShapePrior:
    mean: np.ndarray  # (40,) average shape coefficients
    between: np.ndarray  # (40,) variance between people
    within: np.ndarray  # (40,) variance between photos of one person

    def kept(self, photos: int) -> np.ndarray:
        """`(40,)` share of the photos' average deviation from the mean face that the
        estimate keeps (0-1): `between / (between + within / photos)`."""
        return self.between / (self.between + self.within / max(int(photos), 1))

    def estimate(self, shapes: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """The person's shape `(40,)` from their photos' fits `(N, 40)`; `strength` 0 gives
        the plain average, 1 the full estimate."""
        shapes = np.asarray(shapes, np.float64).reshape(-1, len(self.mean))
        average = shapes.mean(0)
        keep = 1.0 - float(strength) * (1.0 - self.kept(len(shapes)))
        return self.mean + keep * (average - self.mean)


@lru_cache(maxsize=1)
def shape_prior() -> ShapePrior:
    """The prior shipped beside this module."""
    try:
        table = json.loads(TABLE.read_text())
        mean, between, within = (np.asarray(table[k], np.float64) for k in FIELDS)
        valid = mean.shape == between.shape == within.shape == (len(mean),) and bool(
            np.isfinite(mean).all() and (between > 0).all() and (within > 0).all()
        )
    except (OSError, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ModelFileError(
            f"The shape prior {TABLE} is missing or damaged; reinstall selfswap "
            "(pip install --force-reinstall selfswap)."
        )
    return ShapePrior(mean, between, within)
