"""User-facing errors: one clear sentence, shown without a traceback by the CLI."""


class SelfswapError(Exception):
    """An error caused by input or environment that the user can fix."""


class ModelFileError(SelfswapError):
    """A model file is missing or corrupt."""


class ImageError(SelfswapError):
    """An image could not be read, or is not usable."""


class NoFaceError(SelfswapError):
    """No face was found where one is required."""
