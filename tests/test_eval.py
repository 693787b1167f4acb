"""Evaluation harness: metric functions on known answers, the classic baseline, and the whole
harness + report on the public-domain faces (and on LFW when present)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from selfswap.errors import SelfswapError
from selfswap.eval import metrics
from selfswap.eval.harness import Describer, evaluate, paired_differences, read_pairs, summarize
from selfswap.eval.judge import SAME_PERSON
from selfswap.eval.methods import NoSwap, PoissonSwap, piecewise_affine_warp
from selfswap.eval.report import write_report
from selfswap.io.images import save_image
from selfswap.provenance import embed_watermark


@pytest.fixture(scope="module")
def describe() -> Describer:
    return Describer()


def test_identical_images_have_zero_errors_and_similarity_one(describe, astronaut):
    a, b = describe(astronaut), describe(astronaut.copy())
    assert metrics.cosine_similarity(a.embedding, b.embedding) == pytest.approx(1.0, abs=1e-9)
    assert metrics.pose_error(a.pose, b.pose) == 0
    assert metrics.expression_error(a.expression, b.expression) == 0
    assert metrics.shape_error(a.shape, b.shape) == 0


def test_in_plane_rotation_gives_the_right_roll_difference(describe, grace_hopper):
    h, w = grace_hopper.shape[:2]
    face = describe(grace_hopper)
    center = tuple(face.box.reshape(2, 2).mean(0))
    turned = cv2.warpAffine(
        grace_hopper,
        cv2.getRotationMatrix2D(center, 20, 1.0),
        (w, h),
        borderMode=cv2.BORDER_REFLECT,
    )
    rotated = describe(turned)
    roll_change = rotated.pose[2] - face.pose[2]
    assert abs(abs(roll_change) - 20) < 3, roll_change
    assert abs(rotated.pose[0] - face.pose[0]) < 5  # yaw barely moves


def test_pose_error_of_a_known_yaw_difference():
    assert metrics.pose_error([30.0, 0.0, 0.0], [10.0, 0.0, 0.0]) == pytest.approx(20 / 3)
    batch = metrics.pose_error(np.array([[5.0, 5, 5], [0, 0, 0]]), np.zeros((2, 3)))
    np.testing.assert_allclose(batch, [5.0, 0.0])


def test_retrieval_on_a_constructed_gallery():
    rng = np.random.default_rng(0)
    gallery = np.eye(6) + 0.01 * rng.standard_normal((6, 6))
    queries = gallery[[0, 1, 2, 3]] + 0.05 * rng.standard_normal((4, 6))
    truth = np.array([0, 1, 2, 4])  # the last query looks like person 3, not 4
    top1 = metrics.retrieval_hits(queries, gallery, truth, 1)
    np.testing.assert_array_equal(top1, [True, True, True, False])
    assert metrics.retrieval_hits(queries, gallery, truth, 6).all()


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 3))
    assert metrics.frechet_distance(x, x) == pytest.approx(0, abs=1e-6)
    shifted = x + np.array([2.0, 0, 0])
    assert metrics.frechet_distance(x, shifted) == pytest.approx(4.0, rel=1e-6)
    scaled = x * 2  # same mean; cov 4I vs I: tr(I + 4I - 2*2I) = 3
    assert metrics.frechet_distance(x, scaled) == pytest.approx(3.0, rel=0.05)


def test_frechet_distance_refuses_too_few_or_bad_samples():
    x = np.random.default_rng(1).standard_normal((10, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match="finite"):
        metrics.frechet_distance(np.full((5, 3), np.nan), x)


def face_ellipse(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = np.asarray(box).astype(int)
    mask = np.zeros(image.shape[:2], np.float32)
    center, axes = ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2)
    cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1)
    return mask


def paste(image: np.ndarray, face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None]
    return (image * (1 - m) + face * m).round().clip(0, 255).astype(np.uint8)


def test_sharpness_ratio_sees_blur_and_low_resolution_pastes(describe, astronaut):
    box = describe(astronaut).box
    assert metrics.sharpness_ratio(astronaut, astronaut, box) == pytest.approx(1.0)
    mask = face_ellipse(astronaut, box)
    soft = paste(astronaut, cv2.GaussianBlur(astronaut, (0, 0), 2.0), mask)
    chip = cv2.resize(cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA), (512, 512))
    blurred, upsampled = (metrics.sharpness_ratio(x, astronaut, box) for x in (soft, chip))
    assert blurred < 0.5 and upsampled < 0.3
    sharpened = cv2.addWeighted(astronaut, 2.0, cv2.GaussianBlur(astronaut, (0, 0), 1.5), -1.0, 0)
    assert metrics.sharpness_ratio(sharpened, astronaut, box) > 1.5


def test_seam_score_grows_with_a_visible_step(describe, astronaut):
    """A deliberately bad paste (a hard-edged, brightened face) has a larger seam than the
    same change feathered or Poisson-blended; an unchanged image has none."""
    box = describe(astronaut).box
    mask = face_ellipse(astronaut, box)
    brighter = np.clip(astronaut * 1.25 + 10, 0, 255)
    hard = metrics.seam_score(paste(astronaut, brighter, mask), astronaut, box)
    feathered = metrics.seam_score(
        paste(astronaut, brighter, cv2.GaussianBlur(mask, (0, 0), 12)), astronaut, box
    )
    center = (int(box[0] + box[2]) // 2, int(box[1] + box[3]) // 2)
    poisson = cv2.seamlessClone(
        brighter.astype(np.uint8), astronaut, (mask * 255).astype(np.uint8), center,
        cv2.NORMAL_CLONE,
    )  # fmt: skip
    blended = metrics.seam_score(poisson, astronaut, box)
    assert hard > 5 and hard > 1.4 * blended and blended > feathered and feathered < 2.5
    assert math.isnan(metrics.seam_score(astronaut, astronaut, box))
    assert math.isnan(metrics.seam_score(embed_watermark(astronaut), astronaut, box))


def test_read_pairs_refuses_broken_pair_files(tmp_path):
    cases = {
        "empty.tsv": b"",
        "header.tsv": b"source\tsource_id_ref\ttarget\n",
        "short.tsv": b"source\tsource_id_ref\ttarget\na.jpg\tb.jpg\n",
        "binary.tsv": bytes(range(256)),
        "columns.tsv": b"a\tb\tc\nx\ty\tz\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SelfswapError):
            read_pairs(tmp_path / name)
    good = tmp_path / "good.tsv"
    good.write_text("source\tsource_id_ref\ttarget\na/1.jpg\ta/2.jpg\tb/1.jpg\n")
    with pytest.raises(SelfswapError, match="positive"):
        read_pairs(good, limit=-1)
    assert read_pairs(good, images=tmp_path)[0].source_person == "a"


def wild_set(tmp_path: Path, identities: str) -> tuple[Path, Path]:
    """`(pair file, image folder)` of an in-the-wild set with the `identities` table (CSV
    text) and two pairs: 1.jpg (ref 2.jpg) into 3.jpg, 3.jpg (ref 4.jpg) into 1.jpg."""
    images = tmp_path / "wild" / "images"
    images.mkdir(parents=True)
    (tmp_path / "wild" / "identity.csv").write_text(identities)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("source\tsource_id_ref\ttarget\n1.jpg\t2.jpg\t3.jpg\n3.jpg\t4.jpg\t1.jpg\n")
    return tsv, images


def test_pairs_take_people_from_an_identity_table(tmp_path):
    """In-the-wild sets keep all photos in one folder; `identity.csv` beside it names the
    people and flags the ones unseen in training."""
    table = "file,identity,in_celeba_small\n1.jpg,7,1\n2.jpg,7,1\n3.jpg,9,0\n4.jpg,9,0\n"
    tsv, images = wild_set(tmp_path, table)
    first, second = read_pairs(tsv, images=images)
    assert (first.source_person, first.unseen) == ("7", False)
    assert (second.source_person, second.unseen) == ("9", True)


def test_pairs_can_swap_from_several_photos_of_the_source(tmp_path):
    """`source_photos` K adds up to K-1 more photos of the source person, never the pair's
    reference or target; it needs the identity table."""
    table = "file,identity\n1.jpg,7\n2.jpg,7\n6.jpg,7\n5.jpg,7\n3.jpg,9\n4.jpg,9\n"
    tsv, images = wild_set(tmp_path, table)
    assert [p.more_sources for p in read_pairs(tsv, images=images)] == [(), ()]
    first, second = read_pairs(tsv, images=images, source_photos=3)
    assert first.more_sources == (images / "5.jpg", images / "6.jpg")
    assert second.more_sources == ()  # person 9 has no photo besides source and reference
    assert read_pairs(tsv, images=images, source_photos=2)[0].more_sources == (images / "5.jpg",)
    with pytest.raises(SelfswapError, match="at least 1"):
        read_pairs(tsv, images=images, source_photos=0)
    (tmp_path / "wild" / "identity.csv").unlink()
    with pytest.raises(SelfswapError, match="no identity.csv"):
        read_pairs(tsv, images=images, source_photos=2)


def test_harness_swaps_from_several_source_photos(describe, tmp_path, astronaut, grace_hopper):
    """Each swap gets all of its source photos, the records say how many, the shape error is
    measured against their average shape, and a folder made with another count is not
    resumed."""
    images = tmp_path / "images"
    images.mkdir()
    for name, image in [("h1.png", grace_hopper), ("h2.png", grace_hopper[:, ::-1]),
                        ("h3.png", grace_hopper[20:, 10:]), ("a.png", astronaut)]:  # fmt: skip
        save_image(images / name, image)
    (tmp_path / "identity.csv").write_text("file,identity\nh1.png,h\nh2.png,h\nh3.png,h\n")
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("source\tsource_id_ref\ttarget\nh1.png\th3.png\ta.png\n")

    class Counting(NoSwap):
        name = "counting"

        def swap(self, source, target):
            seen.append(len(source) if isinstance(source, list) else 1)
            return super().swap(source, target)

    seen: list[int] = []
    out = tmp_path / "ev"
    pairs = read_pairs(tsv, images=images, source_photos=2)
    result = evaluate([Counting()], pairs, out, recon=0, progress=False)
    (record,) = result["records"]["counting"]
    assert seen == [2] and record["sources"] == 2
    one, two = describe(grace_hopper), describe(grace_hopper[:, ::-1].copy())
    std = np.asarray(result["inputs"][0]["source"].shape)
    assert np.allclose(std, (one.shape + two.shape) / 2, atol=1e-4)
    with pytest.raises(SelfswapError, match="2 source photo"):
        evaluate([Counting()], read_pairs(tsv, images=images), out, recon=0, progress=False)


def test_bootstrap_ci_and_image_metrics():
    mean, lo, hi = metrics.bootstrap_ci(np.full(50, 0.7))
    assert mean == lo == hi == pytest.approx(0.7)
    values = np.random.default_rng(2).normal(1.0, 1.0, 400)
    mean, lo, hi = metrics.bootstrap_ci(values)
    assert lo < mean < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
    assert math.isnan(metrics.bootstrap_ci([np.nan])[0])
    img = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.psnr(img, img) == float("inf") and metrics.ssim(img, img) == 1.0
    noisy = np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 25 < metrics.psnr(img, noisy) < 29


def test_piecewise_affine_warp_moves_points_where_asked():
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:44, 40:44] = 255  # a bright dot at (42, 42)
    src = np.array([[10, 10], [90, 10], [90, 90], [10, 90], [42, 42]], float)
    dst = src + np.array([5.0, 3.0])
    warped, mask = piecewise_affine_warp(image, src, dst, image.shape)
    ys, xs = np.nonzero(warped[..., 0] > 128)
    assert abs(xs.mean() - 46.5) < 1 and abs(ys.mean() - 44.5) < 1
    assert mask[50, 50] == 255 and mask[5, 5] == 0


def test_poisson_baseline_moves_identity_and_keeps_the_frame(describe, astronaut, grace_hopper):
    out = PoissonSwap().swap(grace_hopper, astronaut)
    assert out.shape == astronaut.shape
    diff = np.abs(out.astype(int) - embed_watermark(astronaut)).max(2)
    assert diff[:60].max() == 0 and diff[-100:].max() == 0  # far from the face: untouched
    hopper, target, swapped = describe(grace_hopper), describe(astronaut), describe(out)
    before = metrics.cosine_similarity(target.embedding, hopper.embedding)
    after = metrics.cosine_similarity(swapped.embedding, hopper.embedding)
    assert after > before + 0.02


def public_pairs(folder: Path, astronaut, grace_hopper) -> Path:
    """A pair file over the public-domain faces; the 'other photo' of each person is their
    mirror image, so the harness runs on a fresh clone without LFW."""
    people = {"hopper": grace_hopper, "astronaut": astronaut}
    for name, image in people.items():
        save_image(folder / "lfw" / name / f"{name}_0001.png", image)
        save_image(folder / "lfw" / name / f"{name}_0002.png", np.ascontiguousarray(image[:, ::-1]))
    rows = [
        "source\tsource_id_ref\ttarget",
        "hopper/hopper_0001.png\thopper/hopper_0002.png\tastronaut/astronaut_0001.png",
        "astronaut/astronaut_0001.png\tastronaut/astronaut_0002.png\thopper/hopper_0001.png",
    ]
    (folder / "splits").mkdir()
    (folder / "splits" / "pairs.tsv").write_text("\n".join(rows) + "\n")
    return folder / "splits" / "pairs.tsv"


def test_harness_and_report_on_public_faces(tmp_path, astronaut, grace_hopper):
    tsv = public_pairs(tmp_path, astronaut, grace_hopper)
    pairs = read_pairs(tsv)
    assert len(pairs) == 2 and pairs[0].source_person == "hopper"
    methods = [NoSwap(), PoissonSwap()]
    out = tmp_path / "report"
    result = evaluate(methods, pairs, out, recon=1, progress=False)
    summary = summarize(result)
    assert summary["gallery"] == 2 and summary["pairs_with_faces"] == 2
    none, classic = summary["methods"]["no swap"], summary["methods"][PoissonSwap.name]
    assert none["id_target"][0] == pytest.approx(1.0)
    assert none["pose_error"][0] == pytest.approx(0, abs=1e-5)
    assert classic["id_source"][0] > none["id_source"][0]
    assert classic["id_target"][0] < 1.0
    assert classic["recon_ssim"][0] > 0.9 and math.isnan(none["recon_ssim"][0])
    # the independent judge: an unchanged target is the target person, the classic swap
    # moves towards the source; sharpness and seam are measured on the full-size output
    assert none["sface_target"][0] == pytest.approx(1.0) and none["sface_closer"][0] == 0
    assert classic["sface_source"][0] > none["sface_source"][0]
    assert classic["sface_target"][0] < 0.9
    assert none["sharpness"][0] == pytest.approx(1.0) and math.isnan(none["seam"][0])
    assert 0.3 < classic["sharpness"][0] < 3 and classic["seam"][0] > 0
    differences = paired_differences(result, "no swap")
    moved = differences[PoissonSwap.name]
    assert moved["id_source"][0] > 0 and moved["id_target"][0] < 0
    assert moved["recon_ssim"] is None  # "no swap" has no self-reconstruction
    with pytest.raises(SelfswapError, match="not one of the evaluated"):
        paired_differences(result, "nonesuch")
    summary.update(reference="no swap", differences=differences)
    report = write_report(summary, out, tsv.name, 1, "test")
    text = report.read_text()
    assert "| no swap |" in text and "landmark warp + Poisson" in text
    assert "SFace, never used in training" in text
    assert "## Differences to no swap" in text
    assert json.loads((out / "metrics.json").read_text())["gallery"] == 2
    assert (out / "charts.png").stat().st_size > 10_000
    # Resuming adds nothing: every record is already there.
    lines = (out / "records" / "no-swap.jsonl").read_text().splitlines()
    evaluate(methods, pairs, out, recon=1, progress=False)
    assert (out / "records" / "no-swap.jsonl").read_text().splitlines() == lines


@pytest.mark.lfw
def test_eval_cli_on_lfw(shared_data, tmp_path):
    from selfswap.cli import main

    out = tmp_path / "eval-out"
    tsv = shared_data / "splits" / "lfw_eval_swap_pairs.tsv"
    args = ["--limit", "3", "--recon", "1", "--real", "20", "--video-frames", "6"]
    code = main(["eval", "--model", "default", "--pairs", str(tsv), *args, "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["pairs"] == 3 and summary["real_set"] == "held-out photos"
    row = summary["methods"]["selfswap default"]
    assert row["swaps"] == 3 and 0.5 < row["id_source"][0] <= 1
    assert (out / "report.md").is_file() and (out / "samples.png").is_file()
    assert summary["video"]["selfswap default"]["frames_with_face"] == 1.0
    assert "Video stability" in (out / "report.md").read_text()


def test_landmark_jitter_known_answers():
    from selfswap.eval.video import landmark_jitter

    t = np.arange(10, dtype=float)[:, None, None]
    steady = np.concatenate([3 * t, 2 * t], axis=2).repeat(68, axis=1)  # constant velocity
    assert landmark_jitter(steady) == pytest.approx(0, abs=1e-12)
    shaking = steady.copy()
    shaking[:, :, 0] += (-1.0) ** np.arange(10)[:, None]  # ±1 px every other frame
    assert landmark_jitter(shaking) == pytest.approx(4.0)


def test_video_stability_of_the_unchanged_clip():
    from selfswap.eval.video import video_metrics

    result = video_metrics([NoSwap()], frames=8)
    clip, same = result["input clip"], result["no swap"]
    assert clip["frames_with_face"] == 1.0 and clip["jitter_px"] < 3
    assert same["jitter_px"] == pytest.approx(clip["jitter_px"], rel=0.2)
    assert clip["id_consistency"] > 0.99 and clip["id_to_source"] < 0.95


def test_contact_sheet_shows_face_crops_at_full_size(tmp_path, astronaut, grace_hopper):
    from PIL import Image

    from selfswap.eval.sheet import MAX_ROW, face_crop, public_sheet

    crop = face_crop(astronaut, np.array([178.0, 62.0, 268.0, 176.0]))
    assert crop.shape[:2] == (205, 205)  # 1.8 x the 114-px box, native pixels
    path = public_sheet([NoSwap(), PoissonSwap()], tmp_path / "sheet.jpg")
    sheet = Image.open(path)
    # two rows (one per public-domain pair), each source | target | 2 methods
    assert sheet.height <= 2 * (MAX_ROW + 30) and sheet.width > 4 * 150


def test_dev_clip_metrics_of_an_unchanged_clip(shared_data, astronaut, grace_hopper):
    from selfswap.eval.video import dev_clip_metrics

    clip = shared_data / "video-dev" / "vox_driving2.mp4"
    result = dev_clip_metrics([NoSwap()], [clip], [(grace_hopper, grace_hopper)], frames=8)
    rows = result["vox_driving2"]
    same, original = rows["no swap"], rows["input clip"]
    assert original["frames"] == 8 and same["frames"] == 8
    # the output is re-encoded, so the unchanged clip matches its original only roughly
    assert same["jitter_ratio"] == pytest.approx(1.0, rel=0.15)
    assert same["flicker_ratio"] == pytest.approx(1.0, rel=0.15)
    assert original["sface_mean"] < SAME_PERSON  # the clip's person is not Grace Hopper
    assert same["fps"] > 0
    # the unchanged clip's eyes open and close with the original's
    assert original["eye_error"] == 0.0 and original["eye_follow"] == pytest.approx(1.0)
    assert same["eye_error"] < 0.02


def test_eval_of_a_single_pair_finishes_without_a_frechet_distance(
    tmp_path, astronaut, grace_hopper
):
    """The Fréchet distance needs 2+ swaps: one pair is evaluated, the FD left out."""
    from selfswap.cli import main

    save_image(tmp_path / "h.png", grace_hopper)
    save_image(tmp_path / "a.png", astronaut)
    tsv = tmp_path / "one.tsv"
    tsv.write_text("source\tsource_id_ref\ttarget\nh.png\th.png\ta.png\n")
    args = ["--baselines", "no-swap", "--images", str(tmp_path), "--recon", "0", "--real", "0"]
    code = main(["eval", "--pairs", str(tsv), *args, "--video-frames", "0", "--no-samples",
                 "--out", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0
    row = json.loads((tmp_path / "ev" / "metrics.json").read_text())["methods"]["no swap"]
    assert row["swaps"] == 1 and "frechet" not in row
