"""Image swapping end to end with a (briefly) trained model on the public-domain faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_train_config
from selfswap.errors import NoFaceError, SelfswapError
from selfswap.provenance import is_watermarked
from selfswap.swap.pipeline import FaceSwapper
from selfswap.train.loop import train


@pytest.fixture(scope="module")
def swapper(train_faces, tmp_path_factory) -> FaceSwapper:
    run = tmp_path_factory.mktemp("swap-run") / "run"
    torch.set_num_threads(1)
    train(tiny_train_config(train_faces, run, "steps=2", "checkpoint.every=2"), log=lambda *_: None)
    return FaceSwapper.load(run)


def test_swap_keeps_the_frame_and_changes_the_face(swapper, astronaut, grace_hopper):
    result = swapper.swap_image([grace_hopper], astronaut, watermark=False)
    out = result.image
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert result.swapped == [0] and result.crops.shape == (1, 64, 64, 3)
    x0, y0, x1, y1 = result.faces[0].box.astype(int)
    diff = np.abs(out.astype(int) - astronaut).max(axis=2)
    assert diff[y0:y1, x0:x1].mean() > 1  # the face was repainted
    far = np.ones(diff.shape, bool)
    w = x1 - x0
    far[max(0, y0 - w) : y1 + w, max(0, x0 - w) : x1 + w] = False
    assert diff[far].max() == 0  # pixels far outside the swap mask are untouched


def test_output_is_watermarked(swapper, astronaut, grace_hopper):
    assert is_watermarked(swapper.swap_image([grace_hopper], astronaut).image)


def test_select_faces_by_index_and_reference(swapper, astronaut, grace_hopper):
    pair = np.concatenate([astronaut, grace_hopper[:512, :512]], axis=1)
    only_right = swapper.swap_image([astronaut], pair, faces=[1], watermark=False)
    assert only_right.swapped == [1]
    diff = np.abs(only_right.image.astype(int) - pair).max(axis=2)
    assert diff[:, :512].max() == 0 and diff[:, 512:].max() > 0
    reference = swapper.analyzer.analyze(astronaut)[0].embedding
    by_ref = swapper.swap_image([grace_hopper], pair, faces=reference, watermark=False)
    assert by_ref.swapped == [0]
    both = swapper.swap_image([grace_hopper], pair, faces="all", watermark=False)
    assert both.swapped == [0, 1]


def test_several_source_photos_average(swapper, astronaut, grace_hopper):
    one = swapper.source_identity([grace_hopper])
    two = swapper.source_identity([grace_hopper, np.ascontiguousarray(grace_hopper[:, ::-1])])
    assert two.photos == 2
    assert np.linalg.norm(two.embedding - one.embedding) < 0.3


def test_bad_requests(swapper, astronaut, grace_hopper):
    sky = np.full((240, 320, 3), (120, 160, 220), np.uint8)
    with pytest.raises(NoFaceError, match="target"):
        swapper.swap_image([grace_hopper], sky)
    with pytest.raises(NoFaceError, match="source"):
        swapper.swap_image([sky], astronaut)
    with pytest.raises(SelfswapError, match="index 3 does not exist"):
        swapper.swap_image([grace_hopper], astronaut, faces=[3])


def test_load_refuses_other_folders(tmp_path: Path):
    with pytest.raises(SelfswapError, match="not a training run"):
        FaceSwapper.load(tmp_path)


def test_video_swap_keeps_frames_fps_and_audio(swapper, astronaut, grace_hopper, tmp_path):
    import av

    from selfswap.swap.pipeline import swap_video
    from selfswap.swap.video import probe
    from test_video import pan_frames, write_clip

    frames = pan_frames(astronaut, grace_hopper)[:8]
    frames[3] = np.full_like(frames[3], 128)  # a frame without a face passes through
    clip = tmp_path / "in.mp4"
    write_clip(clip, frames, seconds=len(frames) / 25)
    out = tmp_path / "out.mp4"
    stats = swap_video(swapper, [grace_hopper], clip, out, progress=False, watermark=False)
    assert stats.frames == 8
    src, dst = probe(clip), probe(out)
    assert dst.frames == 8 and dst.fps == src.fps and dst.has_audio
    assert (dst.width, dst.height) == (640, 480)
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert np.abs(decoded[3].astype(int) - 128).mean() < 2
    x0, y0, x1, y1 = swapper.fast_analyzer.analyze(frames[0])[0].box.astype(int)
    face_change = np.abs(decoded[0][y0:y1, x0:x1].astype(int) - frames[0][y0:y1, x0:x1])
    assert face_change.mean() > 5  # the face was swapped, not just re-encoded
    with pytest.raises(SelfswapError):
        swap_video(swapper, [grace_hopper], clip, out, progress=False)  # exists
