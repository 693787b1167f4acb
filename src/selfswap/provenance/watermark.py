"""The invisible watermark on every synthetic image and video frame selfswap writes.

Embedding (unchanged since v1, so files marked by earlier versions are found too): a
key-seeded, zero-mean pattern of 32×32 pixels, band-limited to 0.04–0.25 cycles/pixel so JPEG
keeps it, tiled over the image and added to all three channels (at most ±4 of 255; PSNR
≈ 46.7 dB before clipping).

Detection, in two steps, on the central part of the image (`SCAN_SIZE`, `FOLD_SIZE`: the cost
does not grow with the image):

1. **Scale.** A resize by a factor `s` turns the 32-px tiling into a `32·s`-px one. The tiling
   puts the pattern's energy on a lattice of spectral lines at multiples of `1/(32·s)`
   cycles/pixel, whose strengths are known (the pattern's own spectrum) and which a crop does
   not move. The detector high-passes and whitens the region, takes its power spectrum,
   divides it by its local average (so only narrow peaks stand out) and, for every `s` from
   `MIN_SCALE` to `MAX_SCALE` in steps of half a frequency bin, takes the mean of that at the
   lattice points weighted by the pattern's power there (bicubic samples; then finer steps
   around the best). Factors above 1.2 are searched on a half-size copy. The best factor
   (checked against the finer lattices it is a part of, `_propose_scale`) and `s = 1` go on
   to step 2.
2. **Fold and correlate** (the v1 test). The region is resampled by `1/s`, high-passed,
   whitened by local energy, folded onto one 32×32 tile by averaging every tile position,
   and correlated with the pattern at all 1024 cyclic shifts (so crops that move the tile grid
   are found too). The score is how far the best shift stands above the spread of all shifts,
   in standard deviations; the image's score is the best over the candidate factors.

Only the magnitude spectrum proposes a factor and only the phase-exact fold decides, so an
unmarked image (whose spectrum has peaks of its own, e.g. JPEG's 8-px block grid) gains
nothing but a second try of the fold test, which the threshold accounts for. Both
steps leave out the pattern's harmonics where photos have structure of their own
(`_used_harmonics`).

Measured (`benchmarks/watermark_robustness.py`, results in
`benchmarks/results/watermark_robustness.md`): found after resizes from 50 % to 200 %, JPEG
down to quality 50, crops and resize + JPEG. Not handled: rotation, a changed aspect ratio,
resizes outside 0.4–2.5, heavy blur; on small images (a 250-px photo halved to 125 px) JPEG
below q80 on top of the resize. The signed C2PA manifest (`selfswap.provenance.credentials`)
says more than the watermark can, but any re-save removes it; the watermark is what survives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache

import cv2
import numpy as np
import scipy.fft

TILE = 32
KEY = "selfswap-watermark-v1"
DEFAULT_STRENGTH = 4.0
#: Scores above this mean "marked". Set from `benchmarks/watermark_robustness.py` on LFW
#: photos (250x250 JPEGs, the hard case: few tiles), scale search on: untouched photos scored
#: at most 4.82 (1,000 of lfw_eval; 200 of them after each edit: at most 4.67) and 4.69 (2,000
#: of lfw_train); marked ones at least 5.31 after JPEG q70, 5.47 after a resize to 75 % and
#: JPEG q80, 6.9 after a resize to 50 %, 7.4 after one to 200 %. (v1: 5.5, without the scale
#: search and on 191 photos.)
DETECTION_THRESHOLD = 5.0
#: Resize factors searched (the range tested is 0.5–2.0).
MIN_SCALE, MAX_SCALE = 0.4, 2.5
#: Factors closer than this (relative) are one peak of the spectral search; a lattice whose
#: lines are at least ALIAS as strong as those of the best factor's m-th sublattice wins over
#: it (`_propose_scale`). One factor goes on to the fold test, besides s = 1: each more would
#: be one more chance for an unmarked photo to pass (with the best two, 2,000 untouched LFW
#: photos scored up to 4.9; with one, up to 4.7).
APART = 0.04
ALIAS = 0.5
#: Side of the central region whose spectrum proposes factors, and of the central region that
#: is folded once resampled to the original size (FOLD_SIZE·s pixels of the image as given).
SCAN_SIZE = 512
FOLD_SIZE = 512


@cache
def _pattern(key: str = KEY) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    noise = rng.choice([-1.0, 1.0], size=(TILE, TILE))
    # Keep low and middle frequencies (JPEG quantises the high ones away), cyclically so
    # tiles join seamlessly.
    spectrum = np.fft.fft2(noise)
    fy = np.abs(np.fft.fftfreq(TILE))[:, None]
    fx = np.abs(np.fft.fftfreq(TILE))[None, :]
    radius = np.hypot(fx, fy)
    spectrum[(radius > 0.25) | (radius < 0.04)] = 0
    pattern = np.real(np.fft.ifft2(spectrum))
    pattern -= pattern.mean()
    return (pattern / np.abs(pattern).max()).astype(np.float32)


@lru_cache(maxsize=8)
def _band(width: int, channels: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The rounded pattern times `strength` for one band of `TILE` rows of an image
    `width` pixels wide, as the rows of the image's `(H, W·C)` view see it (every channel
    gets the same value): its positive and negative parts, uint8 `(TILE, W·C)` each."""
    delta = np.rint(strength * _pattern())  # (TILE, TILE), |values| <= strength
    row = np.tile(np.repeat(delta, channels, axis=1), (1, -(-width // TILE)))[:, : width * channels]
    positive = np.clip(row, 0, 255).astype(np.uint8)
    negative = np.clip(-row, 0, 255).astype(np.uint8)
    positive.flags.writeable = negative.flags.writeable = False  # shared through the cache
    return positive, negative


def embed_watermark(
    image_rgb: np.ndarray, strength: float = DEFAULT_STRENGTH, *, inplace: bool = False
) -> np.ndarray:
    """The image `(H, W, 3)` uint8 with the watermark added.

    The rounded pattern is added with saturating uint8 arithmetic, one band of `TILE` rows at
    a time: no float copy of the image, so a 4000x3000 photo or a 1080p frame is marked in a
    few milliseconds. `inplace`: mark a C-contiguous uint8 image itself (returned) instead of
    a copy, e.g. a frame the caller has just made."""
    image = np.asarray(image_rgb)
    h, w = image.shape[:2]
    if image.dtype != np.uint8:  # values on the 0-255 scale in another type
        tiled = np.tile(_pattern(), (-(-h // TILE), -(-w // TILE)))[:h, :w]
        marked = image.astype(np.float32) + strength * tiled.reshape(h, w, *[1] * (image.ndim - 2))
        return np.clip(np.rint(marked), 0, 255).astype(np.uint8)
    channels = image.shape[2] if image.ndim == 3 else 1
    writable = inplace and image.flags.c_contiguous and image.flags.writeable
    out = image if writable else np.array(image, order="C")  # a copy
    rows = out.reshape(h, w * channels)
    positive, negative = _band(w, channels, float(strength))
    for y in range(0, h, TILE):
        band = rows[y : y + TILE]
        n = band.shape[0]
        # only one of the two is non-zero at each pixel: the sum saturates like np.clip
        cv2.add(band, positive[:n], dst=band)
        cv2.subtract(band, negative[:n], dst=band)
    return out


@dataclass(frozen=True)
class WatermarkResult:
    """What `find_watermark` found: the detection score, the resize factor at which it was
    found (1.0: the original size; 0.5: the image was halved), and the threshold."""

    score: float
    scale: float
    threshold: float = DETECTION_THRESHOLD

    @property
    def found(self) -> bool:
        return self.score > self.threshold


def find_watermark(image_rgb: np.ndarray) -> WatermarkResult:
    """Look for the watermark in an image `(H, W[, C])` at any resize factor from
    `MIN_SCALE` to `MAX_SCALE` and any crop (see the module's docstring)."""
    image = np.asarray(image_rgb)
    h, w = image.shape[:2]
    if min(h, w) < 2 * TILE:
        return WatermarkResult(0.0, 1.0)
    gray = _gray(_central(image, round(FOLD_SIZE * MAX_SCALE)))  # all the steps look at
    # s = 1 is always tried (the v1 test); a factor this close to 1 is no resize at all
    scale = _propose_scale(gray)
    candidates = [1.0] if abs(np.log(scale)) < 0.003 else [scale, 1.0]
    results = [WatermarkResult(_fold_score(gray, s), s) for s in candidates]
    return max(results, key=lambda r: r.score)


def watermark_score(image_rgb: np.ndarray) -> float:
    """Detection score: large (≫ 6) for marked images, small for others."""
    return find_watermark(image_rgb).score


def is_watermarked(image_rgb: np.ndarray) -> bool:
    return find_watermark(image_rgb).found


# -- detection internals --------------------------------------------------------------------


def _central(image: np.ndarray, size: int) -> np.ndarray:
    """The central `size`×`size` part of an image (all of a side that is shorter)."""
    h, w = image.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[y : y + size, x : x + size]


def _gray(image: np.ndarray) -> np.ndarray:
    """float32 `(H, W)`: any weights summing to 1 keep the pattern, which is the same in
    every channel."""
    image = image.astype(np.float32)
    if image.ndim == 2:
        return image
    if image.shape[2] >= 3:  # RGB, or RGBA whose alpha carries no mark
        return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return image.mean(axis=2)


def _whiten(gray: np.ndarray) -> np.ndarray:
    """High-pass, then divide by the local residual energy so edges and texture do not drown
    the pattern. (v1 used σ 2 and 4 and + 1.5; these narrower ones, measured on LFW, raise
    the lowest score after JPEG q70 from 4.8 to 6.1 and leave unmarked photos' scores as
    they were.)"""
    residual = gray - cv2.GaussianBlur(gray, (0, 0), 1.5)
    local = np.sqrt(cv2.GaussianBlur(residual * residual, (0, 0), 2.0))
    return residual / (local + 0.5)


def _fold_score(gray: np.ndarray, scale: float) -> float:
    """The v1 test after resampling the image by `1/scale`: fold onto one tile, correlate with
    the pattern at every cyclic shift, and say how many standard deviations the best shift
    stands above the others."""
    region = _central(gray, round(FOLD_SIZE * scale))  # FOLD_SIZE a side once resampled
    if abs(scale - 1.0) > 1e-4:
        h, w = region.shape
        size = (max(1, round(w / scale)), max(1, round(h / scale)))
        interpolation = cv2.INTER_AREA if scale > 1 else cv2.INTER_CUBIC
        region = cv2.resize(region, size, interpolation=interpolation)
    h, w = (region.shape[0] // TILE) * TILE, (region.shape[1] // TILE) * TILE
    if min(h, w) < 2 * TILE:
        return 0.0
    residual = _whiten(region)[:h, :w]
    folded = residual.reshape(h // TILE, TILE, w // TILE, TILE).mean(axis=(0, 2))
    correlation = np.real(np.fft.ifft2(np.fft.fft2(folded) * _matched_filter())).ravel()
    best = correlation.argmax()
    rest = np.delete(correlation, best)
    return float((correlation[best] - rest.mean()) / (rest.std() + 1e-9))


@cache
def _used_harmonics() -> np.ndarray:
    """bool `(TILE, TILE)` in FFT order: the pattern's harmonics that detection looks at. Left
    out are those on the axes, where photos fold coherently too (straight edges, the black
    borders of aligned faces), and those at multiples of 1/8 cycle per pixel, where JPEG's
    8-px blocks put theirs: 14 % of the pattern's energy. (With them, one of 1,000 untouched
    LFW photos scored 5.4, above marked photos after JPEG q70; without, at most 4.8.)"""
    k = np.fft.fftfreq(TILE, 1 / TILE).astype(int)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    block = TILE // 8
    return (kx != 0) & (ky != 0) & ~((kx % block == 0) & (ky % block == 0))


@cache
def _matched_filter() -> np.ndarray:
    """What the folded tile's spectrum is multiplied with: the pattern's, conjugated, on the
    harmonics used."""
    return np.conj(np.fft.fft2(_pattern())) * _used_harmonics()


@cache
def _harmonics() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pattern's spectral lines used, in one half-plane (the power spectrum of a real
    image is symmetric): horizontal and vertical harmonic numbers and the normalised power."""
    power = np.abs(np.fft.fft2(_pattern())) ** 2
    k = np.fft.fftfreq(TILE, 1 / TILE)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    keep = (power > 1e-6 * power.max()) & (kx > 0) & _used_harmonics()
    weights = power[keep] / power[keep].sum()
    return kx[keep].astype(np.float32), ky[keep].astype(np.float32), weights.astype(np.float32)


def _line_spectrum(gray: np.ndarray) -> np.ndarray:
    """Power spectrum (`rfft2` layout, zero frequency at row `H // 2`) of the whitened,
    windowed region, divided by its local average: narrow peaks (a tiling) stand out, the
    smooth spectrum of the photo itself is flattened to about 1. float32."""
    residual = _whiten(gray)
    residual -= residual.mean()
    h, w = residual.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(scipy.fft.rfft2(residual * window)) ** 2
    shifted = np.fft.fftshift(power, axes=0).astype(np.float32)
    average = cv2.GaussianBlur(shifted, (0, 0), 4.0, borderType=cv2.BORDER_REFLECT)
    return shifted / (average + 1e-12)


def _sample(spectrum: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bicubic samples of a `_line_spectrum` at fractional frequency bins (`u` horizontal,
    `v` vertical, any sign: mirrored into the stored half-plane); 0 beyond the Nyquist
    frequency, where a resize leaves nothing. (Bilinear samples of the peaks' tops would pull
    the found factor towards whole bins, off by up to 0.25 %.)"""
    rows, columns = spectrum.shape
    flip = u < 0
    u = np.where(flip, -u, u)
    v = np.where(flip, -v, v)
    inside = (u < columns - 2) & (np.abs(v) < rows // 2 - 2)
    x = np.where(inside, u, 0).astype(np.float32)
    y = (np.where(inside, v, 0) + rows // 2).astype(np.float32)
    values = cv2.remap(spectrum, x, y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.where(inside, values, 0)


class _LatticeScan:
    """How strongly the pattern's lattice of spectral lines shows in one region, as a function
    of the resize factor: the weighted mean of the region's `_line_spectrum` at the lattice
    points (about 1 where there is no lattice). `zoom`: how much the region was shrunk (1, or
    0.5 for the half-size copy); `low`–`high`: the factors (of the image as given) it covers."""

    def __init__(self, gray: np.ndarray, zoom: float, low: float, high: float) -> None:
        self.spectrum = _line_spectrum(gray)
        self.shape, self.zoom, self.low, self.high = gray.shape, zoom, low, high
        kx, ky, _ = _harmonics()
        # half a frequency bin at the highest harmonic, at the smallest factor
        self.step = 0.5 * TILE * low * zoom / (float(np.hypot(kx, ky).max()) * max(self.shape))

    def score(self, scales: np.ndarray) -> np.ndarray:
        kx, ky, weights = _harmonics()
        h, w = self.shape
        period = TILE * self.zoom * np.asarray(scales, np.float64)[:, None]
        return _sample(self.spectrum, kx * w / period, ky * h / period) @ weights

    def search(self) -> tuple[np.ndarray, np.ndarray]:
        """`(scales, scores)`: coarse steps over the range, then fine ones around the best."""
        scales = np.exp(np.arange(np.log(self.low), np.log(self.high), self.step))
        scores = self.score(scales)
        best = scales[_separated_peaks(scales, scores, 3)]
        fine = (best[:, None] * np.exp(np.linspace(-self.step, self.step, 21))[None, :]).ravel()
        return np.concatenate([scales, fine]), np.concatenate([scores, self.score(fine)])

    def peak_near(self, scale: float) -> tuple[float, float]:
        """The best factor within two coarse steps of `scale`, and its score."""
        scales = scale * np.exp(np.linspace(-2 * self.step, 2 * self.step, 41))
        scores = self.score(scales)
        return float(scales[scores.argmax()]), float(scores.max())


def _separated_peaks(scales: np.ndarray, scores: np.ndarray, count: int) -> list[int]:
    """Indices of the `count` best scores whose factors differ by more than `APART` (so
    that one broad peak takes one place)."""
    chosen: list[int] = []
    for i in np.argsort(-scores):
        if all(abs(np.log(scales[i] / scales[j])) > APART for j in chosen):
            chosen.append(int(i))
            if len(chosen) == count:
                break
    return chosen


def _propose_scale(gray: np.ndarray) -> float:
    """The most likely resize factor: factors up to 1.3 from the spectrum of the central
    `SCAN_SIZE` region, larger ones from a half-size copy of twice that region (where the
    tiling is back at 0.6–1.25 times its size).

    The lattice of a factor `s` holds every m-th line of the lattice of `m·s`, so an image
    resized by `m·s` scores about as well at `s` (a 200 % resize at 67 %, say). So when the
    lines of the finer lattice `m·s` (m = 2, 3) are there too, at least `ALIAS` as strong,
    `m·s` is taken: for a true `s` they would be at 1/m² of its strength."""
    near = _central(gray, SCAN_SIZE)
    scans = [_LatticeScan(near, 1.0, MIN_SCALE, 1.3)]
    wide = _central(gray, 2 * SCAN_SIZE)
    if min(wide.shape) >= 4 * TILE:
        half = cv2.resize(wide, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        scans.append(_LatticeScan(half, 0.5, 1.2, MAX_SCALE))
    curves = [scan.search() for scan in scans]
    scales = np.concatenate([c[0] for c in curves])
    scores = np.concatenate([c[1] for c in curves])
    best = int(scores.argmax())
    scale, score = float(scales[best]), float(scores[best])
    for m in (2, 3):
        covering = [scan for scan in scans if scan.low <= scale * m <= scan.high]
        if not covering:
            continue
        finer, finer_score = covering[-1].peak_near(scale * m)
        if finer_score - 1 > ALIAS * (score - 1):
            scale, score = finer, finer_score
    return scale
