"""The one error the download stage raises: a one-line message naming the file or host and what to do."""

from stages.shared.errors import DatasetError


class DownloadError(DatasetError):
    """A dataset could not be fetched, verified, unpacked or laid out; nothing half-done is left under its name."""
