"""The complete metadata: ``models`` plus every ``*_models`` module of this package."""

from __future__ import annotations

import importlib
import pkgutil

from sqlalchemy import MetaData

import poolserver.storage as _pkg
from poolserver.storage.models import Base


def load_all_models() -> MetaData:
    """Import every ``poolserver.storage.*_models`` module so their tables join ``Base``."""
    for info in pkgutil.iter_modules(_pkg.__path__):
        if info.name.endswith("_models"):
            importlib.import_module(f"{_pkg.__name__}.{info.name}")
    return Base.metadata
