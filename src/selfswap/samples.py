"""The public-domain faces selfswap may use in demos, docs and tests.

- astronaut: NASA portrait of Eileen Collins (scikit-image), public domain.
- grace_hopper: US Navy portrait of Grace Hopper (matplotlib), public domain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfswap.io.images import load_image, save_image
from selfswap.paths import selfswap_home

SAMPLES = ("astronaut", "grace_hopper")


def astronaut() -> np.ndarray:
    """Eileen Collins, 512x512 RGB uint8."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def grace_hopper() -> np.ndarray:
    """Grace Hopper, 512x600 RGB uint8."""
    from matplotlib import cbook

    return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def sample(name: str) -> np.ndarray:
    if name not in SAMPLES:
        raise ValueError(f"unknown sample '{name}'; known: {', '.join(SAMPLES)}")
    return astronaut() if name == "astronaut" else grace_hopper()


def sample_path(name: str) -> Path:
    """A PNG file of the sample under `$SELFSWAP_HOME/samples`, written on first use."""
    path = selfswap_home() / "samples" / f"{name}.png"
    if not path.is_file():
        save_image(path, sample(name))
    return path
