"""Errors raised by the stages; all are user errors with a one-line message."""

from cache.errors import UserError


class DatasetError(UserError):
    """A dataset folder, split file or image is missing or malformed."""


class ModelError(UserError):
    """A model name or its weights cannot be loaded."""


class FitError(UserError):
    """A fit request is inconsistent with the cached features."""


class ReportError(UserError):
    """Run records cannot be turned into a report (none found, unknown format)."""
