"""crossbook: exact venue L2 books merged into consolidated cross-venue books."""

from importlib.machinery import ExtensionFileLoader

__version__ = "0.1.0"


def compiled() -> bool:
    """Whether the hot path runs compiled (an install built with ``CROSSBOOK_COMPILE=1``)."""
    from crossbook.core import book

    return isinstance(book.__loader__, ExtensionFileLoader)
