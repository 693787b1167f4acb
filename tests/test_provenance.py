"""selfswap's marks on real faces: the watermark (also after resizing, JPEG and crops), the
signed C2PA manifest (valid, changed after a pixel edit, gone after a re-save), the text
metadata, and `selfswap provenance` that reports them."""

from __future__ import annotations

import struct
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from selfswap.io.images import load_image, save_image
from selfswap.provenance import (
    DETECTION_THRESHOLD,
    embed_watermark,
    find_watermark,
    is_watermarked,
    provenance_metadata,
    watermark_score,
)
from selfswap.provenance.credentials import Claim, Ingredient, read_credentials
from selfswap.provenance.edits import edit_pixels_keeping_manifest, jpeg, resize


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    """A $SELFSWAP_HOME of the test session's own (its own signing key; the model files of
    the real one), no user certificate."""
    from selfswap.paths import selfswap_home

    real, home = selfswap_home(), tmp_path_factory.getbasetemp() / "home"
    if not home.is_dir():
        home.mkdir()
        if (real / "models").is_dir():
            (home / "models").symlink_to(real / "models")
    monkeypatch.setenv("SELFSWAP_HOME", str(home))
    monkeypatch.delenv("SELFSWAP_C2PA_CERT", raising=False)
    monkeypatch.delenv("SELFSWAP_C2PA_KEY", raising=False)


# -- watermark ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_watermark_is_invisible_and_detected(request, name):
    image = request.getfixturevalue(name)
    marked = embed_watermark(image)
    assert not is_watermarked(image)
    assert watermark_score(marked) > DETECTION_THRESHOLD + 2
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - image) ** 2))
    assert psnr > 45
    assert np.abs(marked.astype(int) - image).max() <= 4


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
@pytest.mark.parametrize(
    "edit, scale",
    [
        (lambda x: resize(x, 0.5), 0.5),
        (lambda x: resize(x, 2.0), 2.0),
        (lambda x: resize(x, 0.75), 0.75),
        (lambda x: jpeg(x, 70), 1.0),
        (lambda x: jpeg(resize(x, 0.75), 80), 0.75),
        (lambda x: np.ascontiguousarray(x[13:-7, 21:-5]), 1.0),  # a crop that moves the grid
        (lambda x: np.ascontiguousarray(resize(x, 1.5)[31:-40, 7:-60]), 1.5),
    ],
    ids=[
        "resize-0.5",
        "resize-2",
        "resize-0.75",
        "jpeg-70",
        "resize-0.75-jpeg-80",
        "crop",
        "resize-1.5-crop",
    ],  # fmt: skip
)
def test_watermark_survives_resizing_jpeg_and_crops(request, name, edit, scale):
    image = request.getfixturevalue(name)
    found = find_watermark(edit(embed_watermark(image)))
    assert found.found, found
    assert found.scale == pytest.approx(scale, rel=0.01)
    assert not find_watermark(edit(image)).found


def test_small_images_are_not_scored():
    assert watermark_score(np.zeros((40, 40, 3), np.uint8)) == 0.0


def test_gray_and_flat_images_are_not_marked_by_chance():
    assert not is_watermarked(np.full((300, 400, 3), 128, np.uint8))
    noise = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    assert not is_watermarked(noise)


@pytest.mark.lfw
def test_lfw_false_positives_and_detection(shared_data):
    names = (shared_data / "splits" / "lfw_eval.txt").read_text().split()[::40]
    for name in names:
        image = load_image(shared_data / "lfw" / name)
        assert not is_watermarked(image), name
        assert is_watermarked(jpeg(embed_watermark(image), 90)), name
        assert is_watermarked(resize(embed_watermark(image), 0.5)), name


# -- C2PA manifest --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_manifest_is_signed_and_valid(tmp_path, astronaut, grace_hopper, suffix):
    source = save_image(tmp_path / "source.png", grace_hopper)
    claim = Claim(
        model="default",
        model_sha256="ab" * 32,
        ingredients=(Ingredient.of("source", source), Ingredient.of("target", astronaut)),
    )
    meta = provenance_metadata(model="default")
    path = save_image(tmp_path / f"out{suffix}", embed_watermark(astronaut), meta, claim)
    found = read_credentials(path)
    assert found.state == "valid", found
    assert found.by_selfswap and found.synthetic and found.this_installation
    assert found.model == "default" and found.model_sha256 == "ab" * 32
    roles = {i["role"]: i for i in found.ingredients}
    assert roles["source"]["sha256"] == Ingredient.of("source", source).sha256
    assert roles["source"]["title"] == "source.png" and "target" in roles
    assert not found.trusted  # selfswap's own certificate is on no trust list
    pixels = load_image(path)  # still an ordinary image
    if suffix == ".png":
        assert np.array_equal(pixels, embed_watermark(astronaut))
    assert pixels.shape == astronaut.shape


def test_synthetic_metadata_alone_gets_a_manifest(tmp_path, astronaut):
    """Outputs saved with `provenance_metadata` (demo, evaluation sheets) are signed too; plain
    images are not."""
    marked = save_image(tmp_path / "m.png", embed_watermark(astronaut), provenance_metadata())
    assert read_credentials(marked).state == "valid"
    assert read_credentials(save_image(tmp_path / "p.png", astronaut)).state == "missing"


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG")])
def test_manifest_reports_a_pixel_edit_and_a_resave(tmp_path, astronaut, suffix, fmt):
    path = save_image(tmp_path / f"out{suffix}", embed_watermark(astronaut), provenance_metadata())
    edited = tmp_path / f"edited{suffix}"
    edited.write_bytes(edit_pixels_keeping_manifest(path.read_bytes(), fmt))
    load_image(edited)  # still an image
    found = read_credentials(edited)
    assert found.state == "changed", found
    assert found.by_selfswap and any("mismatch" in p for p in found.problems)
    resaved = tmp_path / f"resaved{suffix}"
    Image.open(path).save(resaved, fmt)
    assert read_credentials(resaved).state == "missing"
    assert is_watermarked(load_image(resaved))  # the watermark stays


def test_user_certificate_and_bad_settings(tmp_path, monkeypatch, astronaut):
    from selfswap.provenance.signer import SigningError, signing_identity

    local = signing_identity()
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "cert.pem").write_bytes(local.chain)
    (folder / "key.pem").write_bytes(local.key)
    monkeypatch.setenv("SELFSWAP_C2PA_CERT", str(folder / "cert.pem"))
    with pytest.raises(SigningError, match="go together"):
        signing_identity()
    monkeypatch.setenv("SELFSWAP_C2PA_KEY", str(folder / "cert.pem"))
    with pytest.raises(SigningError, match="private key"):
        signing_identity()
    monkeypatch.setenv("SELFSWAP_C2PA_KEY", str(folder / "key.pem"))
    mine = signing_identity()
    assert not mine.local and mine.alg == "es256"
    path = save_image(tmp_path / "out.jpg", astronaut, provenance_metadata())
    found = read_credentials(path)
    assert found.state == "valid" and found.this_installation  # the same key, set by hand


def test_local_signing_key_is_private_and_explained():
    from selfswap.provenance.signer import KEY_FILE, provenance_folder, signing_identity

    identity = signing_identity()
    folder = provenance_folder()
    assert (folder / KEY_FILE).stat().st_mode & 0o077 == 0
    assert "NOT on any trust list" in (folder / "README.txt").read_text()
    assert signing_identity().serial == identity.serial  # made once, then reused


# -- video ----------------------------------------------------------------------------------


def _mdat_payload(data: bytes) -> int:
    """Offset of the middle of an MP4's media data."""
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"mdat":
            return pos + size // 2
        pos += size
    raise AssertionError("no mdat box")


def test_mp4_gets_a_manifest_and_frames_the_watermark(tmp_path, astronaut, grace_hopper):
    from selfswap.api import check_provenance
    from selfswap.provenance.credentials import signed_output
    from selfswap.swap.video import VideoWriter

    out = tmp_path / "clip.mp4"
    claim = Claim(model="default", ingredients=(Ingredient.of("target", grace_hopper),))
    frame = embed_watermark(np.ascontiguousarray(astronaut[:256, 128:384]))
    with signed_output(out, claim) as part, VideoWriter(part, 256, 256, Fraction(25)) as w:
        for _ in range(10):
            w.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no part file left
    report = check_provenance(out)
    assert report.kind == "video" and report.marked and report.watermarked
    assert report.credentials.state == "valid" and report.credentials.model == "default"
    data = bytearray(out.read_bytes())
    data[_mdat_payload(bytes(data))] ^= 0xFF
    changed = tmp_path / "changed.mp4"
    changed.write_bytes(bytes(data))
    assert read_credentials(changed).state == "changed"


@pytest.mark.slow
def test_api_video_swap_is_signed(tmp_path, astronaut, grace_hopper):
    """The whole path of `selfswap video`: the default model, a 4-frame clip with audio."""
    from selfswap.api import Swapper, check_provenance
    from selfswap.io.files import sha256_of
    from selfswap.provenance.credentials import model_digest
    from test_video import pan_frames, write_clip

    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_clip(clip, pan_frames(astronaut, grace_hopper)[:4], seconds=4 / 25)
    stats = Swapper.load("default").swap_video(grace_hopper, clip, out, progress=False)
    assert stats.frames == 4 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]
    report = check_provenance(out)
    found = report.credentials
    assert report.watermarked and found.state == "valid" and found.synthetic
    assert found.model == "default" and found.model_sha256 == model_digest("default")
    target = [i for i in found.ingredients if i["role"] == "target"]
    assert target == [{"role": "target", "title": "in.mp4", "sha256": sha256_of(clip)}]
    mkv = Swapper.load("default").swap_video(grace_hopper, clip, tmp_path / "o.mkv", progress=False)
    assert any("cannot carry a C2PA manifest" in note for note in mkv.notes)


def test_signed_output_leaves_nothing_on_error(tmp_path):
    from selfswap.provenance.credentials import signed_output

    with pytest.raises(RuntimeError), signed_output(tmp_path / "x.mp4", Claim()) as part:
        part.write_bytes(b"half a video")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


# -- API and command line -------------------------------------------------------------------


def test_saved_swap_result_names_model_and_ingredients(tmp_path, astronaut, grace_hopper):
    from selfswap.api import ImageResult, check_provenance
    from selfswap.provenance.credentials import ingredients, model_digest

    made_from = ingredients([grace_hopper], astronaut)
    result = ImageResult(embed_watermark(astronaut), [], [], [], "default", made_from)
    path = result.save(tmp_path / "out.png", source="hopper.png", target="collins.png")
    report = check_provenance(path)
    assert report.marked and report.watermarked and report.signed_by_selfswap
    found = report.credentials
    assert found.state == "valid" and found.model == "default"
    assert found.model_sha256 == model_digest("default") is not None
    assert [i["role"] for i in found.ingredients] == ["source", "target"]
    assert report.metadata["selfswap:source"] == "hopper.png"
    assert "made by selfswap" in report.text and "on no trust list" in report.text


def test_metadata_written_to_png_andjpeg(tmp_path, astronaut):
    meta = provenance_metadata(source="grace_hopper.png")
    assert meta["selfswap:synthetic"] == "true" and "consent" in meta["selfswap:notice"]
    png = save_image(tmp_path / "out.png", astronaut, meta)
    assert Image.open(png).text["selfswap:source"] == "grace_hopper.png"
    jpg = save_image(tmp_path / "out.jpg", astronaut, meta)
    assert "selfswap:synthetic=true" in Image.open(jpg).getexif()[0x010E]


def test_provenance_command(tmp_path, astronaut, capsys):
    from selfswap.cli import main

    marked = save_image(tmp_path / "m.png", embed_watermark(astronaut), provenance_metadata())
    plain = save_image(tmp_path / "p.png", astronaut)
    small = tmp_path / "small.jpg"
    Image.open(marked).resize((256, 256), Image.BICUBIC).save(small, quality=80)

    def run(path, *extra) -> tuple[int, str]:
        code = main(["provenance", str(path), *extra])
        return code, capsys.readouterr().out

    code, out = run(marked)
    assert code == 0 and "made by selfswap" in out
    assert "C2PA manifest valid" in out and "on no trust list" in out
    assert "watermark found" in out and "selfswap:synthetic: true" in out
    code, out = run(small)  # a resized, re-saved copy: no manifest, the watermark stays
    assert code == 0 and "no C2PA manifest" in out
    assert "watermark found" in out and "at 50% of its size" in out
    code, out = run(plain)
    assert code == 1 and "no selfswap marks found" in out and "watermark not found" in out
    code, out = run(marked, "--manifest")
    assert "trainedAlgorithmicMedia" in out
    # the installed entry point, once
    cmd = [sys.executable, "-m", "selfswap.cli", "provenance", str(marked)]
    found = subprocess.run(cmd, capture_output=True, text=True)
    assert found.returncode == 0 and "C2PA manifest valid" in found.stdout
