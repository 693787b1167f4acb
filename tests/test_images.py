"""Image reading and writing: every odd input gets one clear outcome."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import png_header_only
from selfswap.errors import ImageError
from selfswap.io.images import as_rgb_array, load_image, save_image


def test_rgb_roundtrip_png(tmp_path, astronaut):
    path = save_image(tmp_path / "a.png", astronaut)
    assert np.array_equal(load_image(path), astronaut)
    assert not list(tmp_path.glob("*.part"))


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(ImageError, match="empty"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_truncated_jpeg(tmp_path, astronaut):
    full = tmp_path / "full.jpg"
    Image.fromarray(astronaut).save(full, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(cut)


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    assert load_image(path).tolist() == [[[10, 20, 30]]]


def test_huge_png_is_refused_without_decoding(tmp_path):
    path = tmp_path / "huge.png"
    png_header_only(path, 20000, 20000)
    with pytest.raises(ImageError, match="20000x20000.*limit"):
        load_image(path)


def test_large_jpeg_is_downscaled_while_decoding(tmp_path, astronaut):
    path = tmp_path / "big.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    with pytest.warns(UserWarning, match="downscaled"):
        image = load_image(path, max_pixels=100_000)
    assert image.shape[0] * image.shape[1] <= 100_000
    assert image.shape[2] == 3


def test_grayscale(tmp_path, astronaut):
    path = tmp_path / "gray.png"
    Image.fromarray(astronaut).convert("L").save(path)
    image = load_image(path)
    assert image.shape == (512, 512, 3)
    assert np.array_equal(image[..., 0], image[..., 2])


def test_rgba_is_composited_on_white(tmp_path, astronaut):
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = load_image(path)
    assert image.shape == (512, 512, 3)
    assert (image[:10, :10] == 255).all()
    assert np.array_equal(image[100:, 100:], astronaut[100:, 100:])


def test_sixteen_bit_png(tmp_path, astronaut):
    gray8 = np.asarray(Image.fromarray(astronaut).convert("L"))
    path = tmp_path / "deep.png"
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)
    image = load_image(path)
    assert image.dtype == np.uint8
    assert np.abs(image[..., 0].astype(int) - gray8).max() <= 1


def test_exif_rotation_is_applied(tmp_path, astronaut):
    stored = np.ascontiguousarray(np.rot90(astronaut[:, :400], k=1))  # lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.shape == (512, 400, 3)
    assert np.abs(image.astype(int) - astronaut[:, :400]).mean() < 4


def test_as_rgb_array_accepts_arrays(astronaut):
    assert as_rgb_array(astronaut[..., 0]).shape == (512, 512, 3)
    assert as_rgb_array(astronaut.astype(np.float32) / 255).dtype == np.uint8
    with pytest.raises(ImageError):
        as_rgb_array(np.zeros((4, 4, 7), np.uint8))


def test_unknown_output_format(tmp_path, astronaut):
    with pytest.raises(ImageError, match="unknown output format"):
        save_image(tmp_path / "out.xyz", astronaut)


def test_save_metadata_png(tmp_path, astronaut):
    path = save_image(tmp_path / "m.png", astronaut, {"selfswap": "synthetic"})
    assert Image.open(path).text["selfswap"] == "synthetic"


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_usual_permissions(tmp_path, astronaut, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        path = save_image(tmp_path / "a.png", astronaut[:32, :32])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o640)  # replacing a file keeps its permissions, as open(path, "w") would
    save_image(path, astronaut[:16, :16])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_unwritable_outputs_are_one_sentence(tmp_path, astronaut):
    from selfswap.io.files import OutputError

    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(OutputError, match="afile is a file, not a folder"):
        save_image(tmp_path / "afile" / "x.png", astronaut)
    with pytest.raises(OutputError, match="is a folder"):
        save_image(tmp_path / "folder.png", astronaut)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder.png"]


def test_interrupted_write_leaves_nothing(tmp_path):
    from selfswap.io.files import atomic_write

    def write(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []


def test_symlink_loop_is_an_image_error(tmp_path):
    import os

    os.symlink("b.png", tmp_path / "a.png")
    os.symlink("a.png", tmp_path / "b.png")
    with pytest.raises(ImageError, match="symbolic link loop"):
        load_image(tmp_path / "a.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path / "dir.png")
