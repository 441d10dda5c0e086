"""Fixtures for the storage engine tests: an engine in a temporary folder, on a fake clock."""

from __future__ import annotations

from engine_support import clock, engine

__all__ = ["clock", "engine"]
