"""Training and evaluation data: dataset layouts, source-activity index, on-the-fly mixing, test sets.

The public names are :class:`MixConfig`, :class:`MixtureDataset` and, from :mod:`.testset`,
:class:`TestExample`, :func:`load_manifest`, :func:`build_testset`, :func:`build_mixture_testset`,
:class:`PairDataset`.
"""

from apollo_restore.data.mixing import CATEGORIES, MixConfig, MixtureDataset
from apollo_restore.data.testset import (
    PairDataset,
    TestExample,
    build_mixture_testset,
    build_testset,
    load_manifest,
)
from apollo_restore.degrade import DegradeConfig

__all__ = ["CATEGORIES", "DegradeConfig", "MixConfig", "MixtureDataset", "PairDataset", "TestExample",
           "build_mixture_testset", "build_testset", "load_manifest"]
