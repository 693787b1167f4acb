"""The web app of `selfswap serve` (see `docs/web.md`)."""
