"""The swap model's files, as inference reads them: `selfswap.nets.model.SwapModel` and its
`ModelConfig` from

- `exported`: one `.safetensors` file, fp16 weights with the training configuration in its
  metadata (`selfswap export`, and the shipped `default`);
- `run`: a training run folder (`config.yaml`, `checkpoints/`, `best/`) or one checkpoint
  of it, read for its EMA weights;
- `checkpoint`: the checkpoint folder format (`step-XXXXXXXX/`: weights, training state,
  manifest), verified and listed. The trainer writes it (`selfswap.train.checkpoint`, which
  takes the format from here); nothing here imports the trainer.
"""
