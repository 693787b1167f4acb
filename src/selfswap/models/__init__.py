"""Registry of the model files selfswap uses: where they come from, pull, verify, locate."""

from selfswap.models.registry import ModelSpec, catalog, model_path, pull, verify

__all__ = ["ModelSpec", "catalog", "model_path", "pull", "verify"]
