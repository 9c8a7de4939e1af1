"""crossbook: exact venue L2 books merged into consolidated cross-venue books."""

__version__ = "0.1.0"


def compiled() -> bool:
    """Whether the hot path runs native (the extension built at install, not the pure twin)."""
    from crossbook.core import exact

    return exact.NATIVE is not None


def build() -> str:
    """Which build runs, in words: ``native``, or ``pure Python`` and why."""
    from crossbook.core import native

    if compiled():
        return "native"
    why = native.why_pure.get("crossbook.core._native")
    return f"pure Python: {why}" if why else "pure Python"
