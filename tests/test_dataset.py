"""`FaceDataset` over a prepared folder: item shapes and values, a 2-worker DataLoader
(and a small pickle, for spawned workers), and DistributedSampler sharding."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from selfswap.data.dataset import FaceDataset
from selfswap.data.prepare import make_settings, prepare
from selfswap.data.table import column_array
from selfswap.errors import SelfswapError
from selfswap.io.images import save_image


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Collins (2 photos), Hopper (1) and a pair photo (2 faces, the second unlabelled)."""
    from selfswap.samples import astronaut, grace_hopper

    folder = tmp_path_factory.mktemp("faces")
    collins, hopper = astronaut(), grace_hopper()
    half = np.asarray(Image.fromarray(hopper).resize((256, 300), Image.BILINEAR))
    save_image(folder / "collins/a.png", collins)
    save_image(folder / "collins/b.jpg", collins[:, ::-1])
    save_image(folder / "hopper/a.jpg", hopper)
    small = np.asarray(Image.fromarray(collins[:300, 80:380]).resize((150, 150)))
    small = np.pad(small, ((75, 75), (0, 0), (0, 0)), mode="edge")  # clearly the smaller face
    save_image(folder / "pair/a.png", np.concatenate([small, half], axis=1))
    out = tmp_path_factory.mktemp("prepared") / "set"
    settings = make_settings(128, identity_from="folder", all_faces=True, min_score=0.7)
    prepare(folder, out, settings, identity_from="folder", progress=False, log=lambda _: None)
    return out


def test_items_have_the_documented_shapes_and_values(prepared):
    ds = FaceDataset(prepared)
    table = pq.read_table(prepared / "faces.parquet")
    assert len(ds) == table.num_rows == 5
    assert ds.identity_names == ["collins", "hopper", "pair"] and ds.num_identities == 3
    shapes = {
        "image": (3, 128, 128),
        "landmarks68": (68, 2),
        "landmarks5": (5, 2),
        "shape": (40,),
        "expression": (10,),
        "camera": (3, 4),
        "embedding": (128,),
        "identity": (),
        "index": (),
    }
    identities = []
    for i in range(len(ds)):
        item = ds[i]
        assert {k: tuple(v.shape) for k, v in item.items()} == shapes
        assert item["image"].dtype == torch.float32
        assert item["image"].min() >= 0.0 and item["image"].max() <= 1.0
        assert item["identity"].dtype == torch.int64 and int(item["index"]) == i
        crop = np.asarray(Image.open(prepared / table.column("crop")[i].as_py()).convert("RGB"))
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy() * 255, crop, atol=1e-3)
        np.testing.assert_array_equal(
            item["landmarks68"].numpy(), column_array(table, "landmarks68")[i]
        )
        identities.append(int(item["identity"]))
    # Two faces in the pair photo (left to right): only the main, larger one is labelled.
    assert identities == [0, 0, 1, -1, 2]
    assert ds[-1]["index"] == 4
    with pytest.raises(IndexError):
        ds[5]


def test_two_worker_dataloader(prepared):
    ds = FaceDataset(prepared)
    # What a spawned worker receives: table arrays only, no images or open files.
    payload = pickle.dumps(ds)
    assert len(payload) < 64_000
    torch.testing.assert_close(pickle.loads(payload)[3], ds[3])
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    sizes = [tuple(b["image"].shape) for b in batches]
    assert sizes == [(2, 3, 128, 128), (2, 3, 128, 128), (1, 3, 128, 128)]
    assert torch.cat([b["index"] for b in batches]).tolist() == [0, 1, 2, 3, 4]
    assert batches[0]["camera"].shape == (2, 3, 4)


def test_distributed_sampler_splits_the_rows(prepared):
    ds = FaceDataset(prepared)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=2, sampler=sampler)
        indices = torch.cat([b["index"] for b in loader]).tolist()
        assert len(indices) == 3  # ceil(5 / 2), padded by repetition
        seen.append(indices)
    assert set(seen[0]) | set(seen[1]) == set(range(5))


def test_unfinished_or_mismatched_folders_refused(prepared, tmp_path):
    with pytest.raises(SelfswapError, match="not a finished prepared folder"):
        FaceDataset(tmp_path)
    with pytest.raises(SelfswapError, match="128px crops, not 256px"):
        FaceDataset(prepared, size=256)


def test_source_texture_items_pair_photos_of_one_person(train_faces):
    """With the source texture on, a cross-photo item takes texture and identity code from
    another photo of the same person; a same-photo item from a jittered copy of itself."""
    from selfswap.data.dataset import FaceDataset
    from selfswap.samae.config import SamaeConfig
    from selfswap.train.batches import MaskedFaces

    faces = FaceDataset(train_faces)
    cross = MaskedFaces(faces, SamaeConfig(), seed=0, source_texture=True, cross_photo=1.0)
    same = MaskedFaces(faces, SamaeConfig(), seed=0, source_texture=True, cross_photo=0.0)
    for index in range(len(faces)):
        item = cross[(0, index)]
        r = faces.size
        assert item["texture"].shape == (3, r, r) and item["visibility"].shape == (1, r, r)
        assert float(item["texture"].min()) >= 0 and float(item["texture"].max()) <= 1
        assert item["same"] == 0.0
        partner = [
            i
            for i in range(len(faces))
            if np.allclose(faces.arrays["embedding"][i], item["source_embedding"].numpy())
        ]
        assert partner and partner[0] != index
        assert faces.identity[partner[0]] == faces.identity[index]
        seen = item["visibility"][0] > 0.5
        assert float((seen & (item["face_region"][0] > 0.5)).float().mean()) > 0.1
    own = same[(0, 0)]
    assert own["same"] == 1.0
    seen = own["visibility"][0] > 0.5
    texture, image = own["texture"][:, seen].flatten(), own["image"][:, seen].flatten()
    assert float(torch.corrcoef(torch.stack([texture, image]))[0, 1]) > 0.7
    again = same[(0, 0)]  # seeded by (seed, epoch, index): the same jitter
    assert torch.equal(again["texture"], own["texture"])


def cross_photo_items(faces, **options):
    """`MaskedFaces` of `faces` whose items all take their texture from another photo of
    the same person (seed 0), with these options."""
    from selfswap.samae.config import SamaeConfig
    from selfswap.train.batches import MaskedFaces

    return MaskedFaces(faces, SamaeConfig(), 0, source_texture=True, cross_photo=1.0, **options)


def test_texture_mirror_fills_what_the_partner_photo_did_not_see(train_faces):
    """`data.texture_mirror`: the same cross-photo items (same seed, same partners), with the
    surface the partner photo did not see painted from its mirror image: visibility only
    grows, grows somewhere, and where the partner saw the surface the texture stays."""
    from selfswap.data.dataset import FaceDataset

    faces = FaceDataset(train_faces)
    plain, filled = (cross_photo_items(faces, texture_mirror=m) for m in (0.0, 1.0))
    gained = 0.0
    for index in range(len(faces)):
        a, b = plain[(0, index)], filled[(0, index)]
        assert torch.equal(a["source_embedding"], b["source_embedding"])
        assert bool((b["visibility"] >= a["visibility"] - 1e-6).all())
        gained += float((b["visibility"] - a["visibility"]).sum())
        kept = a["visibility"][0] > 0.999
        assert float((b["texture"] - a["texture"])[:, kept].abs().max()) < 1e-2
    assert gained > 50, gained  # pixels of visibility gained over the set (148 measured)


def test_source_degrade_softens_only_the_partner_photos_detail(train_faces):
    """`data.source_degrade`: the same cross-photo items (same partners, same geometry and
    visibility) with the partner's texture robbed of fine detail (shrunk, JPEG, enlarged),
    its colours and layout kept; off, the items are those of runs before the option."""
    import cv2

    from selfswap.data.dataset import FaceDataset
    from selfswap.train.batches import degrade_source

    faces = FaceDataset(train_faces)
    plain, soft = (cross_photo_items(faces, source_degrade=p) for p in (0.0, 1.0))
    reference = cross_photo_items(faces)

    def fine(texture: torch.Tensor, seen: torch.Tensor) -> float:
        grey = texture.mean(0).numpy()
        return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[seen.numpy()].mean())

    for index in range(len(faces)):
        a, b = plain[(0, index)], soft[(0, index)]
        assert torch.equal(a["texture"], reference[(0, index)]["texture"])  # off = before
        assert torch.equal(a["source_embedding"], b["source_embedding"])
        assert torch.equal(a["visibility"], b["visibility"])
        seen = (a["visibility"][0] > 0.999) & (b["visibility"][0] > 0.999)
        assert fine(b["texture"], seen) < 0.8 * fine(a["texture"], seen)
        assert float((b["texture"] - a["texture"])[:, seen].mean(1).abs().max()) < 0.03

    crop = faces.load_crop(0)
    again = degrade_source(crop, np.random.default_rng(3))
    assert again.shape == crop.shape and again.dtype == np.uint8
    assert np.array_equal(again, degrade_source(crop, np.random.default_rng(3)))


def test_source_only_faces_are_partners_but_never_targets(train_faces):
    """`data.source_only` keeps a set's faces out of the targets and the previews, while
    cross-photo items still take their texture and identity code from them."""
    from selfswap.data.dataset import FaceDataset
    from selfswap.samae.config import SamaeConfig
    from selfswap.train.batches import MaskedFaces
    from selfswap.train.loop import split_rows

    faces = FaceDataset(train_faces)  # sources "collins/i.png" and "hopper/i.png"
    targets, held, only = split_rows(faces, held_out=1, seed=0, source_only=("hopper",))
    hopper = np.flatnonzero(np.char.startswith(faces.sources, "hopper/"))
    assert np.array_equal(only, hopper) and len(only) == 4
    assert not set(targets) & set(only) and not set(held) & set(only)
    assert sorted([*targets, *held]) == sorted(set(range(len(faces))) - set(hopper))
    with pytest.raises(SelfswapError, match="holds no faces of grace"):
        split_rows(faces, 1, 0, ("grace",))
    with pytest.raises(SelfswapError, match="leaves no faces to train on"):
        split_rows(faces, 1, 0, ("collins", "hopper"))
    everyone, _, none = split_rows(faces, 1, 0)
    assert len(everyone) == len(faces) - 1 and not len(none)

    # One Hopper photo is the only target; the other three are its partners only.
    target = int(hopper[0])
    masked = MaskedFaces(
        faces, SamaeConfig(), seed=0, pool=np.array([target]), sources=hopper,
        source_texture=True, cross_photo=1.0,
    )  # fmt: skip
    partners = set()
    for epoch in range(6):
        item = masked[(epoch, target)]
        assert item["same"] == 0.0
        match = np.flatnonzero(
            (faces.arrays["embedding"] == item["source_embedding"].numpy()).all(axis=1)
        )
        partners |= set(match.tolist())
    assert partners and partners <= set(hopper[1:].tolist())


def test_degrade_config_is_the_default_run_with_degraded_partners():
    """configs/default-v2-degrade-128.yaml differs from the default run's config only by
    `data.source_degrade` (and its output folder), so the two compare at equal steps."""
    from pathlib import Path

    from selfswap.config import load_config
    from selfswap.train.config import TrainConfig

    configs = Path(__file__).resolve().parents[1] / "configs"
    base = load_config(TrainConfig, configs / "default-v2-128.yaml").validate()
    arm = load_config(TrainConfig, configs / "default-v2-degrade-128.yaml").validate()
    assert base.data.source_degrade == TrainConfig().data.source_degrade == 0.0
    assert arm.data.source_degrade == 0.3
    arm.data.source_degrade, arm.out = base.data.source_degrade, base.out
    assert arm == base


def test_swap_samples_take_another_persons_face_and_the_swaps_mask(train_faces):
    """`data.cross_identity`: a swap sample's texture, identity code and shape are another
    person's, and its guidance and mask are exactly what the swap builds for that shape on
    the target's expression and pose; the other samples stay training samples."""
    from selfswap.data.dataset import FaceDataset
    from selfswap.samae.config import SamaeConfig
    from selfswap.samae.masks import MaskBuilder
    from selfswap.train.batches import MaskedFaces, geometry_of, renderer_for

    faces = FaceDataset(train_faces)
    mixed = MaskedFaces(faces, SamaeConfig(), 0, source_texture=True, cross_identity=0.5)
    builder = MaskBuilder(renderer_for(faces.size), SamaeConfig())
    table = faces.arrays["embedding"]
    kinds = set()
    for index in range(len(faces)):
        item = mixed[(0, index)]
        swap = bool(item["cross"] > 0.5)
        kinds.add(swap)
        partner = int(np.flatnonzero((table == item["source_embedding"].numpy()).all(1))[0])
        assert (faces.identity[partner] != faces.identity[index]) == swap
        if swap:
            masks = builder.swap(geometry_of(item), faces.arrays["shape"][partner][None])
            assert torch.equal(item["mask"], torch.from_numpy(masks.mask[0]))
            assert torch.equal(item["normals"], torch.from_numpy(masks.normals[0]))
            assert float(item["mask"].min()) == 0.0  # unperforated, with context around
            assert float((item["visibility"] * item["mask"]).sum()) > 50
        assert torch.equal(mixed[(0, index)]["texture"], item["texture"])  # seeded
    assert kinds == {True, False}
    assert "cross" not in cross_photo_items(faces)[(0, 0)]  # off: the items of older runs
    other = MaskedFaces(
        faces, SamaeConfig(), 0, source_texture=True, cross_identity=0.5,
        cross_identity_other_photo=True,
    )  # fmt: skip
    moved = 0
    for index in range(len(faces)):
        a, b = mixed[(0, index)], other[(0, index)]
        assert torch.equal(a["texture"], b["texture"])  # same partner photo, same draws
        if a["cross"] > 0.5:
            code = int(np.flatnonzero((table == b["source_embedding"].numpy()).all(1))[0])
            texture_row = int(np.flatnonzero((table == a["source_embedding"].numpy()).all(1))[0])
            assert faces.identity[code] == faces.identity[texture_row]
            moved += code != texture_row
        else:
            assert torch.equal(a["source_embedding"], b["source_embedding"])
    assert moved > 0
