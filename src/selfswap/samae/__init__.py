"""SAMAE masking: shape-agnostic masks, random mesh scaling, perforation confusion."""

from selfswap.samae.config import MaskConfig, MeshScalingConfig, PerforationConfig, SamaeConfig
from selfswap.samae.masks import (
    MaskBuilder,
    SwapMasks,
    TrainingMasks,
    as_rng,
    build_mask,
    face_region,
    perforate,
    sample_mesh_scaling,
    scale_mesh,
    shape_agnostic_mask,
    swap_mask,
)

__all__ = [
    "MaskBuilder",
    "MaskConfig",
    "MeshScalingConfig",
    "PerforationConfig",
    "SamaeConfig",
    "SwapMasks",
    "TrainingMasks",
    "as_rng",
    "build_mask",
    "face_region",
    "perforate",
    "sample_mesh_scaling",
    "scale_mesh",
    "shape_agnostic_mask",
    "swap_mask",
]
