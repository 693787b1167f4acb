"""Training data: offline preparation (`selfswap prepare`) and the PyTorch dataset.

Names are imported lazily, so `python -m selfswap.data.prepare` and workers stay light.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "FaceDataset": "selfswap.data.dataset",
    "Settings": "selfswap.data.settings",
    "Summary": "selfswap.data.prepare",
    "make_settings": "selfswap.data.prepare",
    "merge": "selfswap.data.prepare",
    "prepare": "selfswap.data.prepare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'selfswap.data' has no attribute {name!r}")
