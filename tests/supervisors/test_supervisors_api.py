"""The public namespace is thin and complete."""

from __future__ import annotations

import supervisors


def test_all_matches_public_attributes() -> None:
    public = {name for name in dir(supervisors) if not name.startswith("_")}
    assert set(supervisors.__all__) == public


def test_public_names_are_documented() -> None:
    for name in supervisors.__all__:
        obj = getattr(supervisors, name)
        if callable(obj):
            assert obj.__doc__, name


def test_package_does_not_import_the_runtime() -> None:
    import ast
    import pathlib

    root = pathlib.Path(supervisors.__file__).parent
    for source in root.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.startswith("kalam_actors") for n in names), source.name


def test_runtime_objects_have_no_public_constructor() -> None:
    import pytest

    with pytest.raises(TypeError, match="no public constructor"):
        supervisors.Supervisor()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no public constructor"):
        supervisors.ChildHandle()  # type: ignore[call-arg]
