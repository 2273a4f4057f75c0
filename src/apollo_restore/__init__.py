"""apollo-restore: restore lossy-compressed music with Apollo band-sequence models.

Public API: :func:`restore`, :func:`load_model`, :func:`save_model`, :class:`Apollo`, :class:`ApolloConfig`,
:class:`Restorer`. Imported lazily so that the command line starts fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Apollo": "apollo_restore.model",
    "ApolloConfig": "apollo_restore.model",
    "load_model": "apollo_restore.checkpoint",
    "save_model": "apollo_restore.checkpoint",
    "restore": "apollo_restore.inference",
    "Restorer": "apollo_restore.inference",
    "ApolloError": "apollo_restore.errors",
}
__all__ = ["Apollo", "ApolloConfig", "ApolloError", "Restorer", "load_model", "restore", "save_model"]

if TYPE_CHECKING:
    from apollo_restore.checkpoint import load_model, save_model
    from apollo_restore.errors import ApolloError
    from apollo_restore.inference import Restorer, restore
    from apollo_restore.model import Apollo, ApolloConfig


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'apollo_restore' has no attribute {name!r}")
