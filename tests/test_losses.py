"""Identity terms of the training loss (#14 item 4): FaceNet beside dlib, and feature
matching on both networks' maps; their config switches and a training run with them on.

Runs on the 8 prepared 64-px crops of the two public-domain faces (Collins and Hopper)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_train_config as tiny
from selfswap.config import ConfigError, load_config, save_config
from selfswap.data.dataset import FaceDataset
from selfswap.face.facenet import align_crops, extract_crops
from selfswap.train import losses
from selfswap.train.config import TrainConfig
from selfswap.train.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces(train_faces) -> FaceDataset:
    return FaceDataset(train_faces)


@pytest.fixture(scope="module")
def id_loss() -> losses.IdentityLoss:
    return losses.IdentityLoss(dlib=0.5, facenet=1.0, feature_match=1.0)


def _batch(faces: FaceDataset, rows: list[int]) -> dict[str, torch.Tensor]:
    items = [faces[r] for r in rows]
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "landmarks5", "embedding")}


def _rows(faces: FaceDataset) -> tuple[int, int, int]:
    """(a Collins photo, another Collins photo, a Hopper photo)."""
    collins = np.flatnonzero(faces.identity == faces.identity_names.index("collins"))
    hopper = np.flatnonzero(faces.identity == faces.identity_names.index("hopper"))
    return int(collins[0]), int(collins[2]), int(hopper[0])


def test_batched_alignment_matches_the_per_face_crop():
    torch.manual_seed(0)
    images = torch.rand(3, 4, 64, 80)
    marks = torch.tensor([[41.6, 28.6], [36.2, 28.8], [22.3, 28.7], [27.8, 28.8], [32.0, 39.4]])
    marks = marks.expand(3, 5, 2).clone()
    marks[1] += torch.tensor([2.0, -1.5])
    marks[2, :, 0] = 2 * marks[2, :, 0].mean() - marks[2, :, 0]  # mirrored, rotated order
    fast = align_crops(images, marks, padding_mode="zeros")
    slow = extract_crops(images, marks, antialias=False)
    assert fast.shape == (3, 4, 160, 160)
    assert float((fast - slow).abs().max()) < 1e-4


def test_facenet_term_is_zero_for_the_truth_and_large_for_another_face(faces, id_loss):
    a, a2, other = _rows(faces)
    b = _batch(faces, [a, a2, other])
    ref = id_loss.reference(b["image"], b["landmarks5"])
    assert ref.shape == (3, 512)
    rows = torch.tensor([0])
    one = {k: v[:1] for k, v in b.items()}

    def facenet_term(target: torch.Tensor) -> float:
        _, logs = id_loss(one["image"], one["landmarks5"], rows, one["embedding"], target)
        return logs["id_facenet"]

    itself, same_person, stranger = (facenet_term(ref[i : i + 1]) for i in range(3))
    assert itself < 1e-4
    assert stranger > 0.5  # cosine < 0.5
    assert itself < same_person < stranger


def test_gradients_reach_the_image_and_not_the_networks(faces, id_loss):
    a, _, other = _rows(faces)
    b = _batch(faces, [a, other])
    mask = torch.zeros(2, 1, *b["image"].shape[-2:])
    mask[..., 16:56, 14:50] = 1
    fake = (b["image"] * 0.6 + 0.2).requires_grad_(True)
    targets = id_loss.reference(b["image"].flip(0), b["landmarks5"].flip(0))  # swapped people
    rows = torch.arange(2)
    total, logs = id_loss(
        fake,
        b["landmarks5"],
        rows,
        b["embedding"].flip(0),
        targets,
        real=b["image"],
        mask=mask,
        fm_rows=rows,
    )
    assert {"id", "id_facenet", "id_fm"} <= logs.keys()
    assert all(np.isfinite(v) and v > 0 for v in logs.values()), logs
    total.backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    for net in (id_loss.dlib, id_loss.facenet):
        assert not net.training
        assert all(not p.requires_grad and p.grad is None for p in net.parameters())


def test_feature_matching_vanishes_on_the_truth_and_looks_inside_the_mask(faces, id_loss):
    a, _, _ = _rows(faces)
    b = _batch(faces, [a])
    real, marks, rows = b["image"], b["landmarks5"], torch.tensor([0])
    mask = torch.zeros(1, 1, *real.shape[-2:])
    mask[..., 20:50, 18:46] = 1
    call = dict(real=real, mask=mask, fm_rows=rows)
    only_fm = losses.IdentityLoss(feature_match=1.0)
    _, same = only_fm(real, marks, torch.zeros(0, dtype=torch.long), **call)
    assert same["id_fm"] < 1e-4 and "id" not in same and "id_facenet" not in same
    noise = torch.rand_like(real) * 0.3
    inside = real + noise * mask
    outside = real + noise * (1 - mask)
    _, near = only_fm(inside, marks, torch.zeros(0, dtype=torch.long), **call)
    _, far = only_fm(outside, marks, torch.zeros(0, dtype=torch.long), **call)
    assert near["id_fm"] > 0.05
    assert far["id_fm"] < near["id_fm"]


def test_bf16_autocast_keeps_the_embedding(faces, id_loss):
    b = _batch(faces, list(range(4)))
    fp32 = id_loss.reference(b["image"], b["landmarks5"])
    bf16 = id_loss.reference(
        b["image"], b["landmarks5"], lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    )
    assert bf16.dtype == torch.float32
    assert float(torch.nn.functional.cosine_similarity(fp32, bf16).min()) > 0.99


def test_dlib_chips_fp32_cuts_the_exact_chip_under_bf16(faces):
    """`loss.dlib_chips_fp32`: under bf16 autocast dlib sees the chip cut in fp32; without
    it (as runs before the option) the chip's sampling grid is rounded."""
    from selfswap.face.identity import extract_chips

    b = _batch(faces, list(range(4)))
    exact = extract_chips(b["image"], b["landmarks5"])
    rows = torch.arange(4)
    seen = {}
    for fp32 in (True, False):
        loss = losses.IdentityLoss(dlib=1.0, dlib_chips_fp32=fp32)
        (dlib,) = loss.nets
        embed = dlib.embed
        dlib.embed = lambda x, embed=embed, fp32=fp32: seen.setdefault(fp32, x) is x and embed(x)
        loss(
            b["image"], b["landmarks5"], rows, dlib_target=b["embedding"],
            autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        )  # fmt: skip
    assert torch.allclose(seen[True].float(), exact, atol=1e-5)
    assert float((seen[False].float() - exact).abs().max()) > 1e-3
    assert TrainConfig().loss.dlib_chips_fp32 is False  # old runs train as they did


def test_config_switches_round_trip_and_default_off(tmp_path):
    default = TrainConfig()
    assert default.loss.id_facenet == 0 and default.loss.id_feature_match == 0
    cfg = load_config(
        TrainConfig, None, ["loss.id_facenet=0.1", "loss.id_feature_match=0.25"]
    ).validate()
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(TrainConfig, tmp_path / "c.yaml").validate()
    assert again == cfg and again.loss.id_facenet == 0.1 and again.loss.id_feature_match == 0.25
    with pytest.raises(ConfigError, match="id_facenet"):
        load_config(TrainConfig, None, ["loss.id_facenet=-1"]).validate()


def test_shipped_facenet_config_adds_the_terms_to_the_texture_config():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    base = load_config(TrainConfig, configs / "samae-texture-128.yaml").validate()
    arm = load_config(TrainConfig, configs / "samae-texture-facenet-128.yaml").validate()
    assert base.loss.id_facenet == base.loss.id_feature_match == 0
    assert arm.loss.id_facenet > 0 and arm.loss.id_feature_match > 0
    # nothing else differs but the output folder
    arm.loss.id_facenet = arm.loss.id_feature_match = 0.0
    arm.out = base.out
    assert arm == base


@pytest.mark.parametrize(
    "overrides",
    [["generator.source_texture=true", "data.cross_photo=1.0"], ["mode=seesaw"]],
    ids=["texture-cross-photo", "seesaw"],
)
def test_two_steps_train_with_the_terms_on(train_faces, tmp_path, overrides):
    cfg = tiny(
        train_faces,
        tmp_path / "run",
        "steps=2",
        "loss.identity_fraction=0.5",
        "loss.id_facenet=0.1",
        "loss.id_feature_match=0.1",
        *overrides,
    )
    trainer = Trainer(cfg, log=lambda *_: None)
    facenet = {k: v.clone() for k, v in trainer.id_loss.facenet.state_dict().items()}
    keys: set[str] = set()
    for batch in trainer.loader():
        logs = trainer.train_step(batch)
        assert all(np.isfinite(v) for v in logs.values()), logs
        keys |= logs.keys()
        if trainer.step >= 2:
            break
    assert {"id", "id_facenet", "id_fm"} <= keys
    after = trainer.id_loss.facenet.state_dict()
    assert all(torch.equal(facenet[k], after[k]) for k in facenet)
    # each cached target is the FaceNet embedding of its own row's crop
    row, cached = next(iter(trainer._facenet_cache.items()))
    item = trainer.faces[row]
    own = trainer.id_loss.reference(item["image"][None], item["landmarks5"][None])[0]
    assert float(torch.nn.functional.cosine_similarity(own, cached, dim=0)) > 0.999


def test_shrink_rows_keeps_scale_one_rows_and_removes_fine_detail(faces):
    b = _batch(faces, list(range(3)))
    x = b["image"].clone().requires_grad_(True)
    out = losses.shrink_rows(x, torch.tensor([1.0, 0.5, 0.3]))
    seen = out.detach()
    assert out.shape == x.shape
    assert torch.equal(seen[0], x[0].detach())

    def detail(img: torch.Tensor) -> float:  # energy of the pixel differences
        return float(img.diff(dim=-1).pow(2).mean() + img.diff(dim=-2).pow(2).mean())

    assert detail(seen[2]) < detail(seen[1]) < detail(x[1].detach())
    assert abs(float(seen[1].mean() - x[1].detach().mean())) < 0.01  # the colours stay
    out.sum().backward()
    assert float(x.grad[1:].abs().sum()) > 0


def test_shrunk_view_leaves_feature_matching_at_zero_and_sees_less_of_the_person(faces):
    a, a2, _ = _rows(faces)
    b = _batch(faces, [a, a2])
    real, marks, rows = b["image"], b["landmarks5"], torch.tensor([0, 1])
    mask = torch.zeros(2, 1, *real.shape[-2:])
    mask[..., 16:56, 14:50] = 1
    both = losses.IdentityLoss(dlib=1.0, feature_match=1.0)
    call = dict(real=real, mask=mask, fm_rows=rows)
    target = b["embedding"].flip(0)  # each photo against the person's other photo
    _, clean = both(real, marks, rows, target, **call)
    _, whole = both(real, marks, rows, target, **call, shrink=torch.ones(2))
    assert whole == clean
    _, small = both(real, marks, rows, target, **call, shrink=torch.full((2,), 0.4))
    assert small["id_fm"] < 1e-4  # truth and fake shrunk alike
    assert small["id"] > clean["id"]


def test_id_shrink_changes_only_the_identity_terms_of_a_step(train_faces, tmp_path):
    def first_step(*extra: str) -> dict[str, float]:
        cfg = tiny(
            train_faces,
            tmp_path / f"run{len(extra)}",
            "steps=1",
            "loss.identity_fraction=0.5",
            "loss.id_feature_match=0.1",
            *extra,
        )
        trainer = Trainer(cfg, log=lambda *_: None)
        return trainer.train_step(next(iter(trainer.loader())))

    plain = first_step()
    shrunk = first_step("loss.id_shrink=1.0", "loss.id_shrink_scale=[0.4, 0.4]")
    assert shrunk["l1"] == plain["l1"] and shrunk["ms_ssim"] == plain["ms_ssim"]
    assert shrunk["id"] != plain["id"] and shrunk["id_fm"] != plain["id_fm"]
    for bad in (["loss.id_shrink=1.5"], ["loss.id_shrink_scale=[0.8, 0.4]"]):
        with pytest.raises(ConfigError, match="id_shrink"):
            load_config(TrainConfig, None, bad).validate()


def test_swap_samples_get_identity_terms_and_no_reconstruction(train_faces, tmp_path):
    cfg = tiny(
        train_faces,
        tmp_path / "run",
        "generator.source_texture=true",
        "data.cross_identity=0.5",
        "loss.identity_fraction=0.25",
        "loss.id_facenet=0.1",
        "loss.id_feature_match=0.1",
    )
    trainer = Trainer(cfg, log=lambda *_: None)
    batch = next(iter(trainer.loader()))
    keep = batch["cross"] < 0.5
    assert keep.any() and not keep.all()  # (seed 0: both kinds in the first batch)
    gen = torch.Generator().manual_seed(0)
    rows = trainer._identity_rows(keep, False, gen)
    assert set(torch.nonzero(~keep).flatten().tolist()) <= set(rows.tolist())
    fm = trainer._feature_rows(keep, False, gen, rows)
    assert bool(keep[fm].all())
    logs = trainer.train_step(batch)
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert {"l1", "id", "id_facenet"} <= logs.keys()
    for bad in (["data.cross_identity=0.5"], ["generator.source_texture=true", "mode=seesaw",
                "data.cross_identity=0.5"]):  # fmt: skip
        with pytest.raises(ConfigError, match="cross_identity"):
            load_config(TrainConfig, None, bad).validate()
