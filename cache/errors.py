"""Errors of the cache; they speak of the file and what is wrong with it, never of CLI options.

Each kind says what the user has to do about it (``remedy``); the CLI turns that into its own words
(``pipeline extract`` says "pass --force to rebuild it", ``pipeline fit`` names the extract command).
"""

from stages.shared.errors import UserError


class CacheError(UserError):
    """A cache file is missing, incomplete, corrupt or does not match the request."""

    remedy: str | None = None


class CacheMismatchError(CacheError):
    """A cache file holds other inputs, another layout, or cannot be read as a cache: it must be rebuilt."""

    remedy = "rebuild"


class CacheMissingError(CacheError):
    """A cache file, or a part of one (``what``: file, split, template_set, positions, array), was never written."""

    remedy = "extract"

    def __init__(self, message: str, what: str = "file", name: str | None = None) -> None:
        super().__init__(message)
        self.what, self.name = what, name


class CacheIncompleteError(CacheError):
    """A write of the cache file is unfinished (killed, or some rank's part is missing): rerunning resumes it."""

    remedy = "resume"


class CacheValueError(CacheError):
    """Features refused on write (NaN or Inf): the encoder overflowed or is broken (``remedy="precision"``),
    or finite values overflow the stored dtype (``remedy="store_dtype"``)."""

    remedy = "precision"

    def __init__(self, message: str, remedy: str = "precision") -> None:
        super().__init__(message)
        self.remedy = remedy


class CacheLockedError(CacheError):
    """Another process holds the write lock of a cache file."""

    remedy = "wait"


class CacheWriteError(CacheError):
    """Writing a cache file failed (disk full, file too large, I/O error); the old cache is untouched.

    HDF5 retries the failed flush when the process exits and can crash there, so the CLI exits at once.
    """

    remedy = "resume"
