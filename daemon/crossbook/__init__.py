"""crossbook: exact venue L2 books merged into consolidated cross-venue books."""

__version__ = "0.1.0"
