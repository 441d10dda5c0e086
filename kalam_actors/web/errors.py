"""The web's one error of its own."""

from __future__ import annotations

from ..errors import KalamError

__all__ = ["WebConfigError"]


class WebConfigError(KalamError, ValueError):
    """Raised when the web cannot start as asked: no job store at the path given, a
    non-loopback host without a token, an empty token, or a manager of another store."""
