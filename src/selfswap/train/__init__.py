"""Training: losses, loop, distributed set-up, checkpoints."""
