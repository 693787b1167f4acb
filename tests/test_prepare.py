"""`selfswap prepare`: a small real set with bad inputs, interruption and resume, shards and
merge, refusals, and (when the shared data is present) a slice of LFW."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from selfswap.data.cli import add_prepare_parser, main
from selfswap.data.prepare import make_settings, merge, prepare
from selfswap.data.table import column_array, read_json, read_rejected
from selfswap.errors import SelfswapError
from selfswap.face import align
from selfswap.io.images import save_image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The small set: 5 images with faces (2 identities + a two-face photo), 4 without.
FACE_FILES = {
    "collins/astronaut.png",
    "collins/astronaut_flip.jpg",
    "hopper/hopper.jpg",
    "hopper/hopper_half.png",
    "two/pair.png",
}
EXPECTED_REJECTED = {
    "coffee.png": "no_face",
    "corrupt.jpg": "damaged",
    "empty.png": "empty_file",
    "notes.txt": "not_an_image",
}


def write_small_set(folder: Path) -> Path:
    """Public-domain faces and bad files, written as files under `folder`."""
    from skimage import data

    from selfswap.samples import astronaut, grace_hopper

    collins, hopper = astronaut(), grace_hopper()
    save_image(folder / "collins/astronaut.png", collins)
    save_image(folder / "collins/astronaut_flip.jpg", collins[:, ::-1])
    save_image(folder / "hopper/hopper.jpg", hopper)
    half = np.asarray(Image.fromarray(hopper).resize((256, 300), Image.BILINEAR))
    save_image(folder / "hopper/hopper_half.png", half)
    small = np.asarray(Image.fromarray(collins[:300, 80:380]).resize((150, 150)))
    small = np.pad(small, ((75, 75), (0, 0), (0, 0)), mode="edge")  # a smaller face, left
    save_image(folder / "two/pair.png", np.concatenate([small, half], axis=1))
    save_image(folder / "coffee.png", data.coffee())  # a photo without a face
    jpeg = (folder / "hopper/hopper.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def run(input_path, output, **kwargs):
    kwargs.setdefault("identity_from", "folder")
    options = {k: kwargs.pop(k) for k in ("min_face_size", "max_yaw", "all_faces") if k in kwargs}
    size = kwargs.pop("size", 128)
    s = make_settings(size, identity_from=kwargs["identity_from"], **options)
    return prepare(input_path, output, s, progress=False, log=lambda _: None, **kwargs)


def read_faces(folder: Path):
    return pq.read_table(folder / "faces.parquet")


def assert_same_dataset(a: Path, b: Path) -> None:
    """Same table, same rejections, same counts, byte-identical crops."""
    ta, tb = read_faces(a), read_faces(b)
    assert ta.equals(tb)
    assert read_rejected(a / "rejected.tsv") == read_rejected(b / "rejected.tsv")
    assert read_json(a / "manifest.json")["counts"] == read_json(b / "manifest.json")["counts"]
    for crop in ta.column("crop").to_pylist():
        assert (a / crop).read_bytes() == (b / crop).read_bytes()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return write_small_set(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def reference(small_set, tmp_path_factory) -> Path:
    """The small set prepared in one uninterrupted in-process run."""
    out = tmp_path_factory.mktemp("reference") / "prepared"
    run(small_set, out, chunk_size=2)
    return out


def test_small_set_table_summary_and_crops(reference):
    manifest = read_json(reference / "manifest.json")
    counts = manifest["counts"]
    assert counts["images_seen"] == 9
    assert counts["images_with_faces"] == 5 and counts["faces"] == 5
    assert counts["rejected"] == {"damaged": 1, "empty_file": 1, "no_face": 1, "not_an_image": 1}
    assert counts["unreadable"] == 3
    assert manifest["settings"]["size"] == 128
    assert manifest["settings"]["template"]
    assert {p: r for p, r, _ in read_rejected(reference / "rejected.tsv")} == EXPECTED_REJECTED

    faces = read_faces(reference)
    assert faces.column("source").to_pylist() == sorted(FACE_FILES)
    assert faces.column("identity").to_pylist() == ["collins", "collins", "hopper", "hopper", "two"]
    assert faces.column("identity_id").to_pylist() == [0, 0, 1, 1, 2]
    # The pair photo: the main face is the bigger Hopper on the right.
    pair = faces.filter(faces.column("source").to_numpy(zero_copy_only=False) == "two/pair.png")
    assert column_array(pair, "box")[0, 0] > 150

    lm68 = column_array(faces, "landmarks68")
    eyes = np.stack([lm68[:, 36:42].mean(1), lm68[:, 42:48].mean(1)], axis=1)
    np.testing.assert_allclose(eyes, np.broadcast_to(align.TEMPLATE[:2] * 128, eyes.shape), atol=6)
    transforms = column_array(faces, "transform")
    assert transforms.shape == (5, 2, 3) and column_array(faces, "camera").shape == (5, 3, 4)
    for crop in faces.column("crop").to_pylist():
        with Image.open(reference / crop) as img:
            assert img.size == (128, 128) and img.format == "JPEG"

    # Camera in crop coordinates: the mesh's landmark vertices project onto the 68 landmarks.
    from selfswap.face.bfm import load_bfm

    bfm = load_bfm()
    shape, expr, camera = (column_array(faces, n) for n in ("shape", "expression", "camera"))
    mesh = bfm.vertices(shape[0], expr[0]) @ camera[0][:, :3].T + camera[0][:, 3]
    inside = ((mesh[:, :2] > 0) & (mesh[:, :2] < 128)).all(1).mean()
    assert inside > 0.95

    emb = column_array(faces, "embedding")
    same = np.linalg.norm(emb[0] - emb[1])  # Collins and her mirror image
    other = np.linalg.norm(emb[0] - emb[2])  # Collins and Hopper
    assert same < 0.6 < other


def test_list_file_with_duplicates_missing_files_and_root(small_set, reference, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# a comment\n\ncollins/astronaut.png\n./collins/astronaut.png\nhopper/hopper.jpg\n"
        f"{small_set / 'hopper/hopper.jpg'}\nmissing/nothere.jpg\n"
    )
    summary = run(listing, tmp_path / "out", root=small_set)
    assert summary.images_seen == 5 and summary.faces == 2
    assert summary.rejected == {"duplicate": 2, "missing": 1}
    faces = read_faces(tmp_path / "out")
    ref = read_faces(reference)
    expected = ref.filter(
        np.isin(ref.column("source").to_numpy(zero_copy_only=False), faces["source"].to_pylist())
    )
    assert faces.drop_columns(["identity_id"]).equals(expected.drop_columns(["identity_id"]))
    rejected = read_rejected(tmp_path / "out" / "rejected.tsv")
    assert [r[1] for r in rejected] == ["duplicate", "duplicate", "missing"]


def _wait_for_parts(out: Path, count: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(list((out / "parts").glob("part-*.parquet"))) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no part file written in time"
        time.sleep(0.05)


def _start(small_set: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "selfswap.data.prepare", "--input", str(small_set)]
    command += ["--output", str(out), "--identity-from", "folder", "--chunk-size", "1"]
    return subprocess.Popen(
        [*command, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_killed_and_interrupted_runs_resume_to_the_same_table(small_set, reference, tmp_path):
    out = tmp_path / "prepared"
    proc = _start(small_set, out)
    _wait_for_parts(out, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    done = sorted((out / "parts").glob("part-*.parquet"))
    assert done and len(done) < 9
    for part in done:  # every committed file is complete
        pq.read_table(part)

    proc = _start(small_set, out)  # resumes, then is interrupted with Ctrl-C
    _wait_for_parts(out, len(done) + 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")  # a very fast machine
    assert proc.returncode == 130 and "run the same command again" in err
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".part")]
    assert not leftovers  # Ctrl-C cleans up its temporary file

    summary = run(small_set, out, chunk_size=3)
    assert summary.processed_now < 9  # only the remaining images were analysed
    assert_same_dataset(out, reference)


def test_two_shards_merge_into_the_same_dataset_as_one_run(small_set, reference, tmp_path):
    shard_dirs = [tmp_path / "shard0", tmp_path / "shard1"]
    sums = [run(small_set, d, shard=f"{i}/2") for i, d in enumerate(shard_dirs)]
    assert all(s.images_seen for s in sums) and sum(s.images_seen for s in sums) == 9
    sources = [set(read_faces(d).column("source").to_pylist()) for d in shard_dirs]
    assert not sources[0] & sources[1]
    merged = merge(shard_dirs, tmp_path / "merged", log=lambda _: None)
    assert merged.images_seen == 9 and merged.faces == 5
    assert_same_dataset(tmp_path / "merged", reference)
    # Merging shards with different settings is refused.
    other = tmp_path / "other"
    run(small_set / "hopper", other, max_yaw=30)
    with pytest.raises(SelfswapError, match="different settings.*max_yaw"):
        merge([shard_dirs[0], other], tmp_path / "bad", log=lambda _: None)
    assert not (tmp_path / "bad").exists()


def test_sets_with_different_identity_sources_merge_side_by_side(small_set, reference, tmp_path):
    # The same photos labelled by a CSV (CelebA style) instead of by folder (LFW style).
    labels = tmp_path / "labels.csv"
    labels.write_text("file,identity\ncollins/astronaut.png,7\nhopper/hopper.jpg,7\n")
    csv_set = tmp_path / "csv_set"
    run(small_set, csv_set, identity_from=f"csv:{labels}")
    merged = merge([reference, csv_set], tmp_path / "merged", log=lambda _: None)

    assert merged.images_seen == 18 and merged.faces == 10
    faces = read_faces(tmp_path / "merged")
    sources = faces.column("source").to_pylist()
    assert sources == sorted(
        [f"prepared/{s}" for s in FACE_FILES] + [f"csv_set/{s}" for s in FACE_FILES]
    )
    by_source = dict(zip(sources, faces.column("identity").to_pylist(), strict=True))
    assert by_source["prepared/hopper/hopper.jpg"] == "prepared/hopper"
    assert by_source["csv_set/hopper/hopper.jpg"] == "csv_set/7"
    assert by_source["csv_set/hopper/hopper_half.png"] is None  # not in the CSV
    # Identities never mix across sets: 3 folder identities + 1 CSV identity.
    assert merged.identities == 4
    rejected = {key for key, _, _ in read_rejected(tmp_path / "merged" / "rejected.tsv")}
    assert rejected == {f"{p}/{k}" for p in ("prepared", "csv_set") for k in EXPECTED_REJECTED}
    # Every crop is the one its set wrote, under a name of its own.
    crops = faces.column("crop").to_pylist()
    assert len(set(crops)) == 10
    originals = read_faces(reference)
    for source, crop in zip(sources, crops, strict=True):
        if source.startswith("prepared/"):
            row = originals.column("source").to_pylist().index(source.removeprefix("prepared/"))
            original = reference / originals.column("crop")[row].as_py()
            assert (tmp_path / "merged" / crop).read_bytes() == original.read_bytes()
    settings = read_json(tmp_path / "merged" / "manifest.json")["settings"]
    assert settings["identity_from"] == f"sets: prepared=folder, csv_set=csv:{labels.name}"


def test_sets_that_label_the_same_people_join_them(small_set, tmp_path):
    # Two CelebA-style sets labelled by the same identity numbers, and one LFW-style set.
    labels = tmp_path / "labels.csv"
    labels.write_text("file,identity\ncollins/astronaut.png,7\nhopper/hopper.jpg,9\n")
    other = tmp_path / "other.csv"
    other.write_text("file,identity\nhopper/hopper.jpg,7\n")
    sets = [tmp_path / "celeb_a", tmp_path / "celeb_b", tmp_path / "by_folder"]
    run(small_set, sets[0], identity_from=f"csv:{labels}")
    run(small_set, sets[1], identity_from=f"csv:{other}")
    run(small_set, sets[2])
    with pytest.raises(SelfswapError, match="celeb_c is not one of the merged sets"):
        merge(sets, tmp_path / "bad", log=lambda _: None, same_people=["celeb_a", "celeb_c"])
    assert not (tmp_path / "bad").exists()

    merge(sets, tmp_path / "merged", log=lambda _: None, same_people=["celeb_a", "celeb_b"])
    faces = read_faces(tmp_path / "merged")
    by_source = dict(
        zip(faces.column("source").to_pylist(), faces.column("identity").to_pylist(), strict=True)
    )
    assert by_source["celeb_a/collins/astronaut.png"] == "celeb_a+celeb_b/7"
    assert by_source["celeb_b/hopper/hopper.jpg"] == "celeb_a+celeb_b/7"  # one person
    assert by_source["celeb_a/hopper/hopper.jpg"] == "celeb_a+celeb_b/9"
    assert by_source["by_folder/hopper/hopper.jpg"] == "by_folder/hopper"  # kept apart
    sources, numbers = faces.column("source").to_pylist(), faces["identity_id"].to_pylist()
    ids = dict(zip(sources, numbers, strict=True))
    assert ids["celeb_a/collins/astronaut.png"] == ids["celeb_b/hopper/hopper.jpg"]


def test_output_prepared_differently_is_refused(small_set, reference):
    with pytest.raises(SelfswapError, match="prepared at size 128, not 64"):
        run(small_set, reference, size=64)
    with pytest.raises(SelfswapError, match="other settings.*max_yaw"):
        run(small_set, reference, max_yaw=20)
    with pytest.raises(SelfswapError, match="shard"):
        run(small_set, reference, shard="0/2")
    # A finished folder re-run is a no-op that reproduces the same outputs.
    before = read_faces(reference)
    summary = run(small_set, reference)
    assert summary.processed_now == 0 and read_faces(reference).equals(before)


def test_unfinished_shard_and_foreign_folder_refused(small_set, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(SelfswapError, match="not a selfswap prepared folder"):
        run(small_set / "hopper", tmp_path / "junk")
    with pytest.raises(SelfswapError, match="not a finished prepared folder"):
        merge([tmp_path / "junk"], tmp_path / "merged", log=lambda _: None)


def test_all_faces_keeps_both_faces_and_labels_the_main_one(small_set, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("two/pair.png\n")
    summary = run(listing, tmp_path / "out", root=small_set, all_faces=True)
    faces = read_faces(tmp_path / "out")
    assert summary.faces == 2 and faces.column("face_index").to_pylist() == [0, 1]
    assert faces.column("main").to_pylist() == [False, True]
    # Only the main face carries the photo's identity label.
    assert faces.column("identity").to_pylist() == [None, "two"]
    assert faces.column("identity_id").to_pylist() == [-1, 0]


def test_command_line(small_set, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_prepare_parser(parser.add_subparsers())
    args = parser.parse_args(["prepare", "--input", "x", "--output", "y", "--shard", "1/4"])
    assert args.shard == "1/4" and args.size == 128 and callable(args.func)

    text_only = tmp_path / "text_only"
    text_only.mkdir()
    (text_only / "readme.txt").write_text("no images here")
    assert main(["--input", str(text_only), "--output", str(tmp_path / "o"), "--quiet"]) == 0
    assert "1 images seen" in capsys.readouterr().out
    assert main(["--input", str(text_only), "--output", str(tmp_path / "p"), "--shard", "2/2"])
    assert "--shard" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "q")]) == 2
    assert main(["--input", "a", "--merge", "b", "--output", str(tmp_path / "r")]) == 2
    assert main(["--output", str(tmp_path / "o"), "--size", "64", "--input", str(text_only)])
    assert "size 128" in capsys.readouterr().err


def _lfw_list(tmp_path: Path, count: int) -> Path:
    if not (SHARED_DATA / "splits" / "lfw_eval.txt").is_file():
        pytest.skip(f"shared face data not found at {SHARED_DATA}")
    lines = (SHARED_DATA / "splits" / "lfw_eval.txt").read_text().splitlines()
    listing = tmp_path / "lfw.txt"
    listing.write_text("\n".join(lines[:count]) + "\n")  # several photos per person
    return listing


@pytest.mark.lfw
def test_lfw_subset_with_two_workers(tmp_path):
    listing = _lfw_list(tmp_path, 50)
    out = tmp_path / "lfw"
    summary = run(listing, out, root=SHARED_DATA / "lfw", workers=2, chunk_size=8)
    assert summary.images_seen == 50 and summary.workers == 2
    assert summary.images_with_faces >= 48, summary.report()
    faces = read_faces(out)
    sources = faces.column("source").to_pylist()
    assert sources == sorted(sources)
    assert faces.column("identity").to_pylist() == [s.split("/")[0] for s in sources]
    emb = column_array(faces, "embedding")
    ids = faces.column("identity_id").to_numpy()
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    same = ids[:, None] == ids[None]
    off_diagonal = ~np.eye(len(ids), dtype=bool)
    assert dist[same & off_diagonal].mean() < 0.6 < dist[~same].mean()


@pytest.mark.slow
@pytest.mark.lfw
def test_lfw_output_independent_of_workers(tmp_path):
    listing = _lfw_list(tmp_path, 50)
    run(listing, tmp_path / "one", root=SHARED_DATA / "lfw", workers=1, chunk_size=7)
    run(listing, tmp_path / "two", root=SHARED_DATA / "lfw", workers=2, chunk_size=5)
    assert_same_dataset(tmp_path / "one", tmp_path / "two")
