"""User-facing errors of every layer: each carries a one-line message that names what to fix.

``UserError`` is the base the CLI turns into one red line and exit code 1; it lives here, in a module that
imports nothing, so that the cache, every stage and the CLI can import it without loading h5py or torch.
"""


class UserError(Exception):
    """An error caused by input the user can fix; the CLI prints it on one line."""


class DatasetError(UserError):
    """A dataset folder, split file or image is missing or malformed."""


class ModelError(UserError):
    """A model name or its weights cannot be loaded."""


class FitError(UserError):
    """A fit request is inconsistent with the cached features."""


class ReportError(UserError):
    """Run records cannot be turned into a report (none found, unknown format)."""


class RequestError(UserError):
    """A request's options are invalid on their own (precision, dtype, batch size, a missing device)."""


class RecordError(UserError):
    """A run record file is not valid JSON or does not follow its schema; the message names the file and field."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason
