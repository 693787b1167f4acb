"""Where selfswap keeps its caches and outputs."""

import os
from pathlib import Path


def selfswap_home() -> Path:
    """Root of selfswap's cache: `$SELFSWAP_HOME`, default `~/.cache/selfswap`."""
    env = os.environ.get("SELFSWAP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "selfswap"
