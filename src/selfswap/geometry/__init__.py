"""Geometry guidance: 3DMM mesh composition and rendering (normal maps, silhouettes)."""

from selfswap.geometry.mesh import (
    Geometry,
    compose,
    crop_cameras,
    face_geometry,
    mesh_vertices,
    pose,
    swap_geometry,
)
from selfswap.geometry.render import Renderer, RendererError, RenderOutput

__all__ = [
    "Geometry",
    "RenderOutput",
    "Renderer",
    "RendererError",
    "compose",
    "crop_cameras",
    "face_geometry",
    "mesh_vertices",
    "pose",
    "swap_geometry",
]
