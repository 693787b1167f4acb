"""selfswap: self-supervised face swapping with a Shape Agnostic Masked AutoEncoder."""

__version__ = "0.1.0"
