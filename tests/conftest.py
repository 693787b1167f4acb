"""Shared fixtures: the public-domain faces, the shared LFW data (optional), analyzers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from selfswap.samples import astronaut

    return astronaut()


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    from selfswap.samples import grace_hopper

    return grace_hopper()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (LFW, CelebA subset); skips the test when it is absent."""
    if not (SHARED_DATA / "splits" / "lfw_eval.txt").is_file():
        pytest.skip(f"shared face data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def analyzer():
    from selfswap.face.analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="session")
def analyzer_no_id():
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer

    return FaceAnalyzer(AnalyzerConfig(embedding="none"))
