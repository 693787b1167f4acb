"""A training run folder as a swap model: `config.yaml` (the training configuration, whose
model sections build the model) and the EMA weights of its `best/` checkpoint, else of its
newest valid one under `checkpoints/`; or the same from a `best/` or one checkpoint folder
given directly, so a model can be tried before it is exported."""

from __future__ import annotations

from pathlib import Path

from selfswap.config import read_config_file
from selfswap.errors import SelfswapError
from selfswap.modelfile import checkpoint as ckpt
from selfswap.nets.model import ModelConfig, SwapModel

CONFIG = "config.yaml"
#: the network of a checkpoint that inference runs: the generator side's EMA weights
EMA = "ema"


def locate(path: Path) -> tuple[Path, Path]:
    """`(run folder, checkpoint folder)` for a run, its `best/` or one checkpoint folder."""
    path = Path(path)
    runs = [p for p in (path, path.parent, path.parent.parent) if (p / CONFIG).is_file()]
    if not runs:
        raise SelfswapError(f"{path}: not a training run or checkpoint folder.")
    if (path / ckpt.WEIGHTS).is_file():
        checkpoint = path
    elif (path / "best" / ckpt.WEIGHTS).is_file():
        checkpoint = path / "best"
    else:
        checkpoint = ckpt.latest_valid(path / "checkpoints", log=lambda *_: None)
        if checkpoint is None:
            raise SelfswapError(f"{path}: the run has no usable checkpoint yet.")
    return runs[0], checkpoint


def read_config(run: Path) -> dict:
    """The training configuration of run folder `run` as written (`config.yaml`), a mapping."""
    return read_config_file(Path(run) / CONFIG)


def load(path: Path) -> tuple[SwapModel, ModelConfig, Path]:
    """`(SwapModel with the EMA weights, in eval mode, its ModelConfig, checkpoint folder)`
    of a training run folder, its `best/` or one checkpoint folder."""
    run, checkpoint = locate(path)
    config = ModelConfig.from_mapping(read_config(run), str(run / CONFIG))
    weights, _ = ckpt.load_weights(checkpoint)
    model = SwapModel(config)
    model.load_state_dict(ckpt.split_weights(weights, EMA))
    return model.eval(), config, checkpoint
