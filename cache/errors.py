"""Errors of the cache; they speak of the file and what is wrong with it, never of CLI options."""

from stages.shared.errors import UserError


class CacheError(UserError):
    """A cache file is missing, incomplete, corrupt or does not match the request."""


class CacheLockedError(CacheError):
    """Another process holds the write lock of a cache file."""


class CacheWriteError(CacheError):
    """Writing a cache file failed (disk full, file too large, I/O error); the old cache is untouched.

    HDF5 retries the failed flush when the process exits and can crash there, so the CLI exits at once.
    """
