"""Robust image reading (any common format, EXIF orientation, bit depth, huge files) and
atomic image writing (synthetic outputs with their metadata and a signed C2PA manifest)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from selfswap.errors import ImageError
from selfswap.io.files import atomic_write, check_input_path

__all__ = ["as_rgb_array", "atomic_write", "image_format_for", "load_image", "save_image"]

#: Images with more pixels than this are downscaled while decoding (JPEG) or refused.
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = None  # we apply our own limit before decoding

WRITABLE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if data.max() > 255 else 255.0
        gray = np.clip(data / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.clip(np.asarray(img) * (255.0 if np.asarray(img).max() <= 1 else 1), 0, 255)
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white rather than whatever colour they stored.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 `(H, W, 3)`, upright per its EXIF orientation.

    Raises `ImageError` with one sentence for anything unusable: missing, empty, not an
    image, truncated, or too large to decode safely.
    """
    path = check_input_path(path, ImageError)
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file.")
    if not path.is_file():
        raise ImageError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty.")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                if img.format != "JPEG":
                    raise ImageError(
                        f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} MP), "
                        f"over the {max_pixels / 1e6:.0f} MP limit; downscale it first."
                    )
                factor = int(np.ceil(np.sqrt(width * height / max_pixels)))
                img.draft("RGB", (width // factor, height // factor))
                warnings.warn(
                    f"{path}: {width}x{height} image downscaled to {img.size[0]}x{img.size[1]}"
                    " while decoding.",
                    stacklevel=2,
                )
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb_array(img)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or an unsupported format).") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied; cannot read it.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: the image is damaged or truncated ({exc}).") from None


def as_rgb_array(image: np.ndarray | Image.Image | str | os.PathLike) -> np.ndarray:
    """Accept a path, a PIL image, or an array (gray, RGB, RGBA, any integer depth)."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return _to_rgb_array(ImageOps.exif_transpose(image))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"Expected an image array (H, W[, 1|3|4]), got shape {array.shape}.")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        array = array[..., :3]
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        scale = 255.0 if array.max() <= 1.0 else 1.0
        array = np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def image_format_for(path: str | os.PathLike) -> str:
    """PIL format name for an output path, or one clear error."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        known = ", ".join(sorted(WRITABLE_SUFFIXES))
        raise ImageError(f"{path}: unknown output format '{suffix}'; use one of {known}.")
    return WRITABLE_SUFFIXES[suffix]


def save_image(
    path: str | os.PathLike,
    image: np.ndarray,
    metadata: dict[str, str] | None = None,
    claim=None,
) -> Path:
    """Write an RGB uint8 image atomically; `metadata` becomes PNG text chunks or, for
    JPEG/WebP, an EXIF ImageDescription/UserComment.

    A synthetic output (metadata from `provenance_metadata`, or a `claim`:
    `selfswap.provenance.credentials.Claim`) also gets a signed C2PA manifest: `claim`, else
    one made from the metadata (see `selfswap.provenance.credentials`)."""
    fmt = image_format_for(path)
    pil = Image.fromarray(as_rgb_array(image))
    if claim is None and metadata and metadata.get("selfswap:synthetic") == "true":
        from selfswap.provenance.credentials import Claim

        claim = Claim.from_metadata(metadata)

    def write(tmp: Path) -> None:
        kwargs: dict = {}
        if metadata and fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            for key, value in metadata.items():
                info.add_text(key, value)
            kwargs["pnginfo"] = info
        elif metadata:
            exif = Image.Exif()
            exif[0x010E] = "; ".join(f"{k}={v}" for k, v in metadata.items())  # description
            kwargs["exif"] = exif.tobytes()
        if fmt == "JPEG":
            kwargs["quality"] = 95
        if claim is None:
            pil.save(tmp, format=fmt, **kwargs)
            return
        from selfswap.provenance.credentials import mime_type, sign_stream

        encoded = io.BytesIO()
        pil.save(encoded, format=fmt, **kwargs)
        encoded.seek(0)
        with open(tmp, "w+b") as out:
            sign_stream(encoded, out, mime_type(path), claim, Path(path).name)

    return atomic_write(path, write)
