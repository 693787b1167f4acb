"""Training (#5): configs, the resumable sampler, overfitting real faces, exact resume,
corrupt checkpoints, seesaw and ablations, and two gloo processes under torchrun.

Runs on 8 crops (64 px) of the two public-domain faces (flipped, shifted, zoomed)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_train_config as tiny
from selfswap.config import ConfigError, load_config
from selfswap.errors import SelfswapError
from selfswap.nets.model import Guidance
from selfswap.train.batches import ResumableSampler
from selfswap.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from selfswap.train.config import TrainConfig
from selfswap.train.loop import Trainer, split_faces, swap_sources, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
TRAIN_CONFIGS = [
    p for p in CONFIGS if p.name.startswith(("samae", "seesaw", "ablation", "default"))
]


@pytest.fixture(scope="module")
def faces(train_faces) -> Path:
    return train_faces


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in trainer.modules().items():
        for k, v in module.state_dict().items():
            out[f"{name}.{k}"] = v.detach().clone()
    return out


def quiet(*_):
    pass


# -- configs and data order --------------------------------------------------------------------


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    cfg = load_config(TrainConfig, path).validate()
    name = path.name
    if "no-mask" in name:
        assert not cfg.samae_config().mask.enabled
    if "no-scaling" in name:
        assert not cfg.samae_config().scaling.enabled
    if "no-perforation" in name:
        assert not cfg.samae_config().perforation.enabled
    if "no-appearance" in name:
        assert cfg.generator_config().appearance_dim == 0
    assert (cfg.generator_config().full_res_head > 0) == ("fullres" in name)
    assert cfg.mode == ("seesaw" if name.startswith("seesaw") else "samae")
    assert cfg.size == (256 if "256" in name else 128)


def test_all_config_names_exist():
    names = {p.name for p in CONFIGS}
    expected = {"samae-128.yaml", "samae-256.yaml", "seesaw-128.yaml"} | {
        f"ablation-no-{x}-128.yaml" for x in ("mask", "scaling", "perforation", "appearance")
    }
    assert expected <= names


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="mode"):
        load_config(TrainConfig, None, ["mode=fancy"]).validate()
    with pytest.raises(ConfigError, match="divisible"):
        load_config(TrainConfig, None, ["size=100"]).validate()
    with pytest.raises(ConfigError, match="perceptual"):
        load_config(TrainConfig, None, ["loss.perceptual=1"]).validate()


def test_precision_layout_and_compile_switches_parse():
    cfg = load_config(
        TrainConfig,
        None,
        ["precision=bf16", "bf16_parts=[generator,losses]", "channels_last=true", "compile=true"],
    ).validate()
    assert cfg.precision == "bf16" and cfg.bf16_parts == ("generator", "losses")
    assert cfg.channels_last is True and cfg.compile is True
    default = TrainConfig()
    assert default.precision == "fp32" and not default.channels_last and not default.compile
    # the CPU configs of one study share their numerics (bf16 networks where the CPU has
    # bf16, fp32 losses)
    for path in TRAIN_CONFIGS:
        shipped = load_config(TrainConfig, path).validate()
        assert shipped.precision == "auto" and "losses" not in shipped.bf16_parts, path.name
        assert not shipped.channels_last and not shipped.compile, path.name
    with pytest.raises(ConfigError, match="precision"):
        load_config(TrainConfig, None, ["precision=fp16"]).validate()
    with pytest.raises(ConfigError, match="bf16_parts"):
        load_config(TrainConfig, None, ["bf16_parts=[generator,optimizer]"]).validate()
    with pytest.raises(ConfigError):
        load_config(TrainConfig, None, ["channels_last=maybe"]).validate()


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from selfswap.train import loop

    cpu = torch.device("cpu")
    for native, expected in ((True, "bf16"), (False, "fp32"), (None, "fp32")):
        monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda native=native: native)
        assert loop.resolve_precision("auto", cpu) == expected
        # an explicit choice is kept, whatever the CPU
        assert loop.resolve_precision("bf16", cpu) == "bf16"
        assert loop.resolve_precision("fp32", cpu) == "fp32"


def test_sampler_resumes_and_shards():
    pool = np.arange(10)
    full = ResumableSampler(pool, 3, seed=1)
    it = iter(full)
    batches = [next(it) for _ in range(8)]
    resumed = iter(ResumableSampler(pool, 3, seed=1, start=5))
    assert [next(resumed) for _ in range(3)] == batches[5:]
    # every epoch visits each face once; two ranks split each global batch
    flat = [b for batch in batches for b in batch][:20]
    assert sorted(i for e, i in flat if e == 0) == list(range(10))
    r0, r1 = iter(ResumableSampler(pool, 2, 1, 0, 2)), iter(ResumableSampler(pool, 2, 1, 1, 2))
    a, b = next(r0), next(r1)
    assert not set(a) & set(b) and len(set(a) | set(b)) == 4


def test_held_out_faces_cover_identities_and_swap_across_them():
    identity = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    train_rows, held = split_faces(identity, 2, seed=0)
    assert len(held) == 2 and set(identity[held]) == {0, 1}
    assert not set(train_rows) & set(held) and len(train_rows) == 6
    assert list(swap_sources(identity[held])) == [1, 0]


# -- training -----------------------------------------------------------------------------------


def test_overfitting_cuts_reconstruction_loss(faces, tmp_path):
    cfg = tiny(
        faces,
        tmp_path / "run",
        "steps=40",
        "batch_size=8",
        "data.held_out=0",
        "loss.identity=0",
        "loss.gan=0",
        "optim.lr_g=2e-3",
    )
    history = []
    trainer = Trainer(cfg, log=quiet)
    for batch in trainer.loader():
        history.append(trainer.train_step(batch)["l1"])
        if trainer.step >= cfg.steps:
            break
    first, last = np.mean(history[:3]), np.mean(history[-3:])
    assert last < 0.6 * first, history


@pytest.mark.slow
def test_overfitting_8_faces_halves_reconstruction_loss(faces, tmp_path):
    cfg = tiny(
        faces,
        tmp_path / "run",
        "steps=300",
        "batch_size=8",
        "data.held_out=0",
        "optim.lr_g=2e-3",
        "loss.identity_fraction=0.25",
    )
    trainer = train(cfg, log=quiet)
    records = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    first = np.mean([r["l1"] for r in records[:5]])
    last = np.mean([r["l1"] for r in records[-5:]])
    assert trainer.step == 300 and last < 0.5 * first, (first, last)


def test_resume_continues_exactly_and_writes_outputs(faces, tmp_path):
    common = ["steps=4", "checkpoint.every=2", "sample_every=2", "loss.identity_fraction=0.5"]
    straight = train(tiny(faces, tmp_path / "a", *common), log=quiet)
    stopped = train(tiny(faces, tmp_path / "b", *common), stop_at=2, log=quiet)
    assert stopped.step == 2
    resumed = train(tiny(faces, tmp_path / "b", *common), resume=True, log=quiet)
    assert resumed.step == 4
    a, b = params(straight), params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    run = tmp_path / "a"
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "step-00000002",
        "step-00000004",
    ]
    assert (run / "best" / "weights.safetensors").is_file()
    grid = Image.open(run / "samples" / "step-00000004.png")
    assert grid.size == (7 * 64, 2 * 64)  # 7 views x 2 held-out faces
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"l1", "ms_ssim", "id", "d", "g_adv", "fm", "samples_per_s"} <= records[-1].keys()


def test_a_run_starts_from_an_exported_model_at_its_step(faces, tmp_path):
    from selfswap.swap import bundle
    from selfswap.train.loop import lr_lambda

    common = ["steps=6", "checkpoint.every=2", "optim.warmup=2"]
    first = train(tiny(faces, tmp_path / "a", *common), stop_at=4, log=quiet)
    model_file = bundle.export(
        tmp_path / "a" / "checkpoints" / "step-00000004", tmp_path / "m.safetensors"
    )
    cfg = tiny(faces, tmp_path / "b", *common, f"init={model_file}")
    started = Trainer(cfg, log=quiet)
    started.start_from(cfg.init)
    assert started.step == 4
    factor = lr_lambda(cfg)(4)
    assert started.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr_g * factor)
    assert started.sched_g.get_last_lr()[0] == pytest.approx(cfg.optim.lr_g * factor)
    for name in ("gside", "ema"):  # both hold the exported (EMA) weights, to fp16
        for key, value in started.modules()[name].state_dict().items():
            expected = first.ema.state_dict()[key]
            torch.testing.assert_close(value, expected, rtol=1e-3, atol=1e-3, msg=key)
    # through `train`: the run continues to its end from there; a checkpoint wins over init
    continued = train(cfg, log=quiet)
    assert continued.step == 6
    records = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 6]
    again = Trainer(cfg, log=quiet)
    assert again.resume() and again.step == 6
    wrong = tiny(faces, tmp_path / "c", *common, "generator.style_dim=32", f"init={model_file}")
    with pytest.raises(SelfswapError, match="different model"):
        Trainer(wrong, log=quiet).start_from(wrong.init)
    # a configuration that adds the full-resolution head starts from the file unchanged
    headed_cfg = tiny(faces, tmp_path / "d", *common, "generator.full_res_head=4")
    headed = Trainer(headed_cfg, log=quiet)
    headed.start_from(model_file)
    model, _, _ = bundle.load_generator_side(model_file)
    g = torch.Generator().manual_seed(0)
    image, normals = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    mask = (torch.rand(2, 1, 64, 64, generator=g) > 0.5).float()
    guidance, z_id = Guidance(image, mask, normals, mask, mask), torch.randn(2, 128, generator=g)
    assert headed.ema.generator.head is not None and model.generator.head is None
    with torch.no_grad():
        torch.testing.assert_close(headed.ema(guidance, z_id), model(guidance, z_id))


def _first_step_dtypes(trainer: Trainer) -> dict[str, object]:
    """Output dtypes of the networks and the memory format of the generator's stem output
    during one training step."""
    seen: dict[str, object] = {}

    def record(name):
        def hook(module, inputs, output):
            out = output[0][0] if isinstance(output, list) else output
            seen.setdefault(name, out.dtype)
            if name == "stem":
                seen["stem_nhwc"] = out.is_contiguous(memory_format=torch.channels_last)

        return hook

    trainer.gside.generator.register_forward_hook(record("generator"))
    trainer.gside.generator.stem.register_forward_hook(record("stem"))
    trainer.disc.register_forward_hook(record("discriminator"))
    trainer.idnet.register_forward_hook(record("identity"))
    logs = trainer.train_step(next(iter(trainer.loader())))
    assert all(np.isfinite(v) for v in logs.values()), logs
    return seen


def test_bf16_and_channels_last_reach_the_step(faces, tmp_path):
    fp32 = _first_step_dtypes(Trainer(tiny(faces, tmp_path / "a"), log=quiet))
    assert fp32["generator"] == fp32["discriminator"] == fp32["identity"] == torch.float32
    assert not fp32["stem_nhwc"]
    cfg = tiny(faces, tmp_path / "b", "precision=bf16", "channels_last=true")
    trainer = Trainer(cfg, log=quiet)
    bf16 = _first_step_dtypes(trainer)
    assert bf16["generator"] == bf16["discriminator"] == bf16["identity"] == torch.bfloat16
    assert bf16["stem_nhwc"]
    assert all(p.dtype == torch.float32 for p in trainer.gside.parameters())
    only_g = tiny(faces, tmp_path / "c", "precision=bf16", "bf16_parts=[generator]")
    parts = _first_step_dtypes(Trainer(only_g, log=quiet))
    assert parts["generator"] == torch.bfloat16
    assert parts["discriminator"] == parts["identity"] == torch.float32


def test_bf16_channels_last_checkpoints_are_fp32_and_resume_exactly(faces, tmp_path):
    common = [
        "steps=4",
        "checkpoint.every=2",
        "loss.identity_fraction=0.5",
        "precision=bf16",
        "channels_last=true",
    ]
    straight = train(tiny(faces, tmp_path / "a", *common), log=quiet)
    weights, state, _ = load_checkpoint(tmp_path / "a/checkpoints/step-00000002")
    assert weights and all(v.dtype == torch.float32 for v in weights.values())
    exp_avg = [s["exp_avg"] for s in state["opt_g"]["state"].values()]
    assert exp_avg and all(v.dtype == torch.float32 for v in exp_avg)
    records = [json.loads(x) for x in (tmp_path / "a/log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(v) for r in records for v in r.values() if isinstance(v, float))
    train(tiny(faces, tmp_path / "b", *common), stop_at=2, log=quiet)
    resumed = train(tiny(faces, tmp_path / "b", *common), resume=True, log=quiet)
    a, b = params(straight), params(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # a bf16 checkpoint continues in fp32 (and the other way round): only speed changes
    fp32 = Trainer(tiny(faces, tmp_path / "b", *common[:3]), log=quiet)
    assert fp32.resume() and fp32.step == 4


@pytest.mark.slow
def test_compiled_step_matches_eager(faces, tmp_path):
    """`compile: true` trains the same weights as eager, to float tolerance (compiling takes
    minutes on a loaded 2-core machine)."""
    common = ["steps=2", "loss.identity_fraction=0.5"]
    eager = train(tiny(faces, tmp_path / "a", *common), log=quiet)
    compiled = train(tiny(faces, tmp_path / "b", *common, "compile=true"), log=quiet)
    a, b = params(eager), params(compiled)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=k)


def test_corrupt_checkpoint_is_refused_and_the_previous_one_used(faces, tmp_path):
    cfg = tiny(faces, tmp_path / "run", "steps=4", "checkpoint.every=2", "loss.identity=0")
    train(cfg, log=quiet)
    latest = tmp_path / "run/checkpoints/step-00000004"
    weights = latest / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(latest)
    messages = []
    trainer = Trainer(cfg, log=messages.append)
    assert trainer.resume() and trainer.step == 2
    assert any("step-00000004" in m and "truncated" in m for m in messages)
    assert latest.exists()  # left for inspection, not deleted
    state = latest / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(latest)


def test_a_signal_stops_at_a_step_boundary_with_a_checkpoint(faces, tmp_path):
    import signal

    cfg = tiny(faces, tmp_path / "run", "steps=10", "checkpoint.every=0", "loss.identity=0")
    trainer = Trainer(cfg, log=quiet)
    step = trainer.train_step

    def interrupted_at_3(batch):
        logs = step(batch)
        if trainer.step == 3:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C, in the middle of training
        return logs

    trainer.train_step = interrupted_at_3
    # Python's own Ctrl-C handler, or SIG_IGN in a process started in the background
    before = signal.getsignal(signal.SIGINT)
    trainer.fit()
    assert trainer.interrupted and trainer.step == 3
    assert [p.name for p in list_checkpoints(tmp_path / "run/checkpoints")] == ["step-00000003"]
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize(
    "overrides",
    [
        ["mode=seesaw"],
        ["ablation.mask=false"],
        ["ablation.mesh_scaling=false"],
        ["ablation.perforation=false"],
        ["ablation.appearance=false"],
    ],
    ids=["seesaw", "no-mask", "no-scaling", "no-perforation", "no-appearance"],
)
def test_modes_and_ablations_train(faces, tmp_path, overrides):
    identity = "loss.identity=0.5" if overrides == ["mode=seesaw"] else "loss.identity=0"
    cfg = tiny(faces, tmp_path / "run", "steps=2", "batch_size=4", identity, *overrides)
    trainer = Trainer(cfg, log=quiet)
    logs = {}
    for batch in trainer.loader():
        logs = trainer.train_step(batch)
        if trainer.step >= 2:
            break
    assert all(np.isfinite(v) for v in logs.values())
    if "ablation.appearance=false" in overrides:
        assert trainer.gside.appearance is None
    if overrides == ["mode=seesaw"]:
        assert trainer.write_samples() is not None


def test_cli_train_runs(faces, tmp_path):
    from selfswap.cli import main

    args = [
        "train",
        "--data",
        str(faces),
        "--out",
        str(tmp_path / "cli"),
        "--set",
        "size=64",
        "--set",
        "steps=1",
        "--set",
        "batch_size=2",
        "--set",
        "generator.channels=[16,32,64]",
        "--set",
        "loss.identity=0",
        "--set",
        "progress=false",
        "--set",
        "checkpoint.every=1",
    ]
    assert main(args) == 0
    assert (tmp_path / "cli/checkpoints/step-00000001/manifest.json").is_file()


def test_two_gloo_processes_end_with_identical_parameters(faces, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(
        "import os, sys, torch\n"
        "from selfswap.config import load_config\n"
        "from selfswap.train.config import TrainConfig\n"
        "from selfswap.train.loop import train\n"
        "cfg = load_config(TrainConfig, None, sys.argv[2:]).validate()\n"
        "t = train(cfg, log=lambda *_: None)\n"
        "rank = int(os.environ['RANK'])\n"
        "state = {f'{n}.{k}': v for n, m in t.modules().items()"
        " for k, v in m.state_dict().items()}\n"
        "torch.save(state, f'{sys.argv[1]}/rank{rank}.pt')\n"
    )
    cfg = tiny(faces, tmp_path / "run")
    overrides = [
        "size=64",
        f"data.root={faces}",
        f"out={tmp_path / 'run'}",
        "batch_size=2",
        "steps=2",
        "data.held_out=2",
        "generator.channels=[16,32,64]",
        "generator.style_dim=64",
        "discriminator.channels=[16,32,64]",
        "appearance.width=8",
        "loss.identity_fraction=0.5",
        "progress=false",
        "checkpoint.every=0",
        "sample_every=0",
    ]
    assert cfg.size == 64
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29531",
        str(script),
        str(tmp_path),
        *overrides,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    changed = False
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fresh = Trainer(cfg, log=quiet)
    for k, v in params(fresh).items():
        changed |= not torch.equal(v, a[k])
    assert changed  # they trained, in lockstep


def test_source_texture_trains_writes_samples_and_swaps(faces, tmp_path, astronaut, grace_hopper):
    """The source-texture switch end to end: training steps take texture, visibility and the
    source's identity code; previews render; the exported model swaps with the source
    photo's pixels (a different source photo changes the swap)."""
    from selfswap.api import Swapper
    from selfswap.swap import bundle
    from selfswap.train.loop import train

    run = tmp_path / "run"
    cfg = tiny(faces, run, "steps=2", "checkpoint.every=2", "sample_every=2",
               "generator.source_texture=true", "data.cross_photo=0.5")  # fmt: skip
    trainer = Trainer(cfg, log=quiet)
    assert trainer.gside.generator.stem.in_channels == 12 * 4  # (8 + 4) x stem_factor²
    batch = next(iter(trainer.loader()))
    assert batch["texture"].shape == batch["image"].shape
    logs = trainer.train_step(batch)
    assert all(np.isfinite(v) for v in logs.values())
    assert trainer.write_samples() is not None
    train(cfg, log=quiet)
    model = bundle.export(run, tmp_path / "textured.safetensors")
    swapper = Swapper.load(model)
    assert swapper.engine.config.generator.source_texture
    # only the texture photo differs (same identity code, shape and face): the swap changes
    engine = swapper.engine
    faces_found = engine.fast_analyzer.analyze(astronaut)
    source = engine.source_identity([grace_hopper])
    darker = dataclasses.replace(source, texture_photo=(grace_hopper // 2).astype(np.uint8))
    a = engine.swap_faces(astronaut, faces_found, source)[0].astype(int)
    b = engine.swap_faces(astronaut, faces_found, darker)[0].astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() > 0.05
