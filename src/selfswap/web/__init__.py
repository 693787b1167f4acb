"""The web app of `selfswap serve` (see `docs/web.md`); numpy's OpenBLAS threads are set
by `selfswap` itself."""
