"""The errors the download stage raises: one-line messages naming the file or host and what to do."""

from stages.shared.errors import DatasetError


class DownloadError(DatasetError):
    """A dataset could not be fetched, verified, unpacked or laid out; nothing half-done is left under its name."""


class RefusedError(DownloadError):
    """A file or archive was refused (unsafe, damaged, past a size limit): the dataset's staging folder is removed."""


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a download; the message says what was kept for the rerun to resume."""
