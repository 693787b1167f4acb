"""Evaluation of swap methods on held-out pairs: identity transfer and leakage, pose,
expression and shape fidelity, realism, self-reconstruction and speed, with bootstrap CIs."""
