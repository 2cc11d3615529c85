"""The feature store: one self-describing HDF5 file per dataset x model x weights.

Knows nothing of models, methods or the CLI: it stores arrays under content keys, writes them crash-safely and
reads them back; ``features`` serves the one layout it holds (image features by split and position, text
features by template set) without defaults of its own. Where a file lives is ``stages.shared.naming``.
"""

from cache.errors import CacheError, CacheLockedError
from cache.features import FeatureCache
from cache.key import key_diff, key_digest
from cache.layout import partial_path
from cache.lock import WriteLock
from cache.reader import CacheReader
from cache.writer import BlockArray, CacheWriter

__all__ = [
    "BlockArray",
    "CacheError",
    "CacheLockedError",
    "CacheReader",
    "CacheWriter",
    "FeatureCache",
    "WriteLock",
    "key_diff",
    "key_digest",
    "partial_path",
]
