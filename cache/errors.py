"""Errors that carry a one-line message meant for the user."""


class UserError(Exception):
    """An error caused by input the user can fix; the CLI prints it on one line."""


class CacheError(UserError):
    """A cache file is missing, incomplete, corrupt or does not match the request."""


class CacheLockedError(CacheError):
    """Another process holds the write lock of a cache file."""
