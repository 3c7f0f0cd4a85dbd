"""The targets registry imports its children at the top: no import hidden in a function."""

import ast
import inspect

import forge.targets
from forge.targets.base import Target


def test_registry_has_no_lazy_import():
    tree = ast.parse(inspect.getsource(forge.targets))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert not [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))], node.name


def test_every_registered_target_follows_the_protocol():
    for name, target in forge.targets.TARGETS.items():
        assert target.name == name and forge.targets.get_target(name) is target
        for method in ("fingerprint", "sdk_python", "compile"):
            assert callable(getattr(target, method)), (name, method)
    assert Target is forge.targets.Target
