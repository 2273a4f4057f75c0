"""The Apollo generator and its config."""

from apollo_restore.model.apollo import Apollo
from apollo_restore.model.config import ApolloConfig

__all__ = ["Apollo", "ApolloConfig"]
