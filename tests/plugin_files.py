"""The collection's plugins as Python modules, loaded from their files (plugins/ is no package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_plugin(path: Path) -> ModuleType:
    """The plugin file at ``path``, imported as a module named after the file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
