"""Swap models as one file: the EMA generator and appearance encoder of a training run in fp16
safetensors, with the training configuration in the file's metadata.

`"default"` names the model shipped inside the package (`selfswap/weights/default.safetensors`,
model card `default.md`). Training runs and their checkpoint folders load too, so a model can be
tried before it is exported.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from selfswap.errors import SelfswapError
from selfswap.io.images import atomic_write

FORMAT = "selfswap-swap-model/1"
SUFFIX = ".safetensors"


def packaged(name: str) -> Path:
    """Path of a model shipped with the package (`default`)."""
    return Path(str(resources.files("selfswap") / "weights" / f"{name}{SUFFIX}"))


def resolve(model: str | Path) -> Path:
    """A packaged model name, an exported `.safetensors` file, or a run/checkpoint folder."""
    text = str(model)
    if os.sep not in text and not text.endswith(SUFFIX) and not Path(text).exists():
        path = packaged(text)
        if not path.is_file():
            raise SelfswapError(
                f"Unknown model {text!r}: give 'default', an exported .safetensors file or a "
                "training run folder."
            )
        return path
    path = Path(model)
    if not path.exists():
        raise SelfswapError(f"Model {path} does not exist.")
    return path


def load_generator_side(path: Path):
    """`(GeneratorSide in eval mode, TrainConfig, metadata)` from an exported model file."""
    from selfswap.config import from_dict
    from selfswap.train.config import TrainConfig
    from selfswap.train.loop import GeneratorSide

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises several types for damaged files
        raise SelfswapError(
            f"{path} is not a readable model file ({exc.__class__.__name__}); export it again "
            "with `selfswap export` or reinstall selfswap."
        ) from None
    if meta.get("format") != FORMAT:
        raise SelfswapError(f"{path} is not a selfswap swap model (no '{FORMAT}' metadata).")
    config = from_dict(TrainConfig, json.loads(meta["config"]))
    model = GeneratorSide(config)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.eval(), config, json.loads(meta.get("info", "{}"))


def export(run: str | Path, out: str | Path, info: dict | None = None) -> Path:
    """Write the EMA generator + appearance encoder of `run` (a run, its best/ or one
    checkpoint folder) as fp16 safetensors at `out`, atomically. Returns `out`."""
    from selfswap.config import to_dict
    from selfswap.swap.pipeline import load_run

    model, config, source = load_run(Path(run))
    weights = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "config": json.dumps(to_dict(config)),
        "info": json.dumps({"checkpoint": source.name, **(info or {})}),
    }
    return atomic_write(out, lambda tmp: save_file(weights, str(tmp), metadata=meta))


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
