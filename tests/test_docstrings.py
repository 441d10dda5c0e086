"""Every public name has a docstring: the names in ``kalam_actors.__all__`` (and in the
facades' and helpers' modules), and every public method, property and classmethod of the
classes among them. ``help(kalam_actors)`` reads as a short manual."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import pydoc
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import kalam_actors
from kalam_actors import aio, blocking, testing

MODULES: tuple[ModuleType, ...] = (kalam_actors, aio, blocking, testing)


def _own_doc(obj: Any) -> str:
    """The docstring written for ``obj`` itself (not one inherited, nor the signature that
    ``dataclasses`` fills in for a class without one)."""
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__") or ""
        if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return ""
        return doc.strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public callables and properties defined in ``cls`` itself (not inherited)."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            yield name, value.__func__
        elif isinstance(value, property):
            yield name, value.fget
        elif inspect.isfunction(value):
            yield name, value


def _public_names() -> list[tuple[str, Any]]:
    found: dict[str, Any] = {}
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            found[f"{module.__name__}.{name}"] = obj
    return sorted(found.items())


def _undocumented() -> list[str]:
    missing = []
    for qualname, obj in _public_names():
        if isinstance(obj, enum.Enum) or not (callable(obj) or isinstance(obj, type)):
            continue  # constants: documented where they are defined
        if not _own_doc(obj):
            missing.append(qualname)
        if isinstance(obj, type):
            for name, member in _members(obj):
                if not _own_doc(member):
                    missing.append(f"{qualname}.{name} ({inspect.getmodule(member).__name__})")
    return missing


def test_every_public_name_and_method_has_a_docstring() -> None:
    missing = _undocumented()
    assert not missing, "no docstring:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_names_exist(module: ModuleType) -> None:
    assert sorted(module.__all__) == sorted(set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.__all__ names {name}, which is missing"


def test_help_of_the_package_reads_as_a_manual() -> None:
    doc = kalam_actors.__doc__ or ""
    assert len(doc.splitlines()) >= 20, "more than a one-line summary"
    for topic in ("open_job_manager", "start_job_manager", "kalam_actors.aio",
                  "create_job", "JobExecutor", "JobStore", "kalam-actors --help",
                  'logger.enable("kalam_actors")', "kalam_actors.testing", "__version__"):
        assert topic in doc, topic
    text = pydoc.render_doc(kalam_actors, renderer=pydoc.plaintext)
    assert "Running it" in text and "Writing an executor" in text


def test_version_comes_from_the_package_metadata() -> None:
    from importlib import metadata

    assert kalam_actors.__version__ == metadata.version("kalam-actors")
    assert kalam_actors.__version__[0].isdigit()
