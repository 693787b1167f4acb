"""Parameters of SAMAE's masking, one switchable dataclass per technique.

Lengths are fractions of the crop side R, so R = 128, 256 or 512 is a config change only.
Ranges are `(low, high)` and sampled uniformly. `../shared/DESIGN.md` §1 explains why each
technique exists; the defaults are starting points for the ablations of §6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class MaskConfig:
    """Shape-agnostic mask: the face region, with concavities removed (convex hull),
    enlarged by `margin` and rounded by a Gaussian of width `smooth`, so the outline follows
    neither the jaw line nor the cheek contour. `enabled=False` is the ablation that uses
    the face region itself (its outline traces the true contour)."""

    enabled: bool = True
    hull: bool = True  # take the convex hull of the region first
    margin: float = 0.06  # dilation radius, fraction of R
    smooth: float = 0.05  # Gaussian sigma of the rounding, fraction of R

    def validate(self) -> None:
        _check(self.margin >= 0 and self.smooth >= 0, "mask margin and smooth must be >= 0")


@dataclass
class MeshScalingConfig:
    """Random mesh scaling (training only): the mesh that *defines the mask* is scaled in
    the face's own frame, so masks come out larger and smaller than the true face, as a
    source mesh is at swap time. The rendered guidance keeps the true mesh."""

    enabled: bool = True
    probability: float = 0.8  # share of samples that are scaled at all
    width: tuple[float, float] = (0.85, 1.18)  # whole face, left-right
    height: tuple[float, float] = (0.9, 1.12)  # whole face, top-bottom (about the nose)
    jaw_width: tuple[float, float] = (0.85, 1.18)  # below the nose, growing to the chin
    jaw_height: tuple[float, float] = (0.85, 1.2)  # lower face, nose to chin
    keep_face_covered: bool = False  # union the scaled mesh with the true face region

    def validate(self) -> None:
        _check(0 <= self.probability <= 1, "mesh scaling probability must be in [0, 1]")
        for name in ("width", "height", "jaw_width", "jaw_height"):
            lo, hi = getattr(self, name)
            _check(0 < lo <= hi, f"mesh scaling {name} must be a range 0 < low <= high")

    @property
    def bounds(self) -> tuple[float, float]:
        """Smallest and largest possible ratio of scaled to true face-region area."""
        lo = self.width[0] * self.height[0] * min(1.0, self.jaw_width[0] * self.jaw_height[0])
        hi = self.width[1] * self.height[1] * max(1.0, self.jaw_width[1] * self.jaw_height[1])
        return lo, hi


@dataclass
class PerforationConfig:
    """Perforation confusion (training only): with `probability`, punch `count` elliptic
    perforations of radius `radius` (fraction of R) into the mask, so real face pixels stay
    visible. A perforation is centred within `band` (fraction of R) of the face outline
    (real face pixels left visible near the mask border) or, with probability `holes`,
    anywhere inside the face (a hole punched in the mask). At most `max_area` of the mask's
    area is uncovered; a perforation that would exceed it is dropped."""

    enabled: bool = True
    probability: float = 0.5
    count: tuple[int, int] = (1, 4)
    radius: tuple[float, float] = (0.015, 0.05)
    band: float = 0.05
    holes: float = 0.3
    max_area: float = 0.08

    def validate(self) -> None:
        _check(0 <= self.probability <= 1, "perforation probability must be in [0, 1]")
        _check(0 <= self.holes <= 1, "perforation holes must be in [0, 1]")
        _check(0 <= self.count[0] <= self.count[1], "perforation count must be a range")
        _check(0 < self.radius[0] <= self.radius[1], "perforation radius must be a range")
        _check(self.band >= 0 and 0 <= self.max_area <= 1, "perforation band/max_area invalid")


@dataclass
class SamaeConfig:
    """All of SAMAE's masking settings."""

    mask: MaskConfig = field(default_factory=MaskConfig)
    scaling: MeshScalingConfig = field(default_factory=MeshScalingConfig)
    perforation: PerforationConfig = field(default_factory=PerforationConfig)

    def validate(self) -> SamaeConfig:
        self.mask.validate()
        self.scaling.validate()
        self.perforation.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dictionary (tuples become lists), e.g. for YAML."""
        return _lists(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SamaeConfig:
        """Build from a nested dictionary; unknown keys are an error, missing ones default."""
        data = dict(data or {})
        parts = {"mask": MaskConfig, "scaling": MeshScalingConfig, "perforation": PerforationConfig}
        unknown = set(data) - set(parts)
        if unknown:
            raise ValueError(f"unknown SAMAE config sections: {sorted(unknown)}")
        built = {name: _build(kind, data.get(name) or {}) for name, kind in parts.items()}
        return cls(**built).validate()


def _build(kind: type, values: dict[str, Any]):
    names = {f.name: f for f in fields(kind)}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} keys: {sorted(unknown)}")
    defaults = kind()
    converted = {
        k: tuple(v) if isinstance(getattr(defaults, k), tuple) else v for k, v in values.items()
    }
    return kind(**converted)


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    return value


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
