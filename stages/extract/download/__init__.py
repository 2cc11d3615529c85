"""``pipeline download``: fetch, verify and lay out the benchmark datasets in the layout extract reads.

The dataset knowledge (archive URLs, published checksums, how each archive becomes CoOp's layout, CoOp's
split files) is in ``manifest.json`` and ``splits/`` beside this module; ``run.download`` does the work.
"""

from stages.extract.download.errors import DownloadError, DownloadInterrupted
from stages.extract.download.manifest import DatasetEntry, FileEntry, load_manifest
from stages.extract.download.run import DOWNLOADABLE, DownloadRequest, Outcome, download

__all__ = ["DOWNLOADABLE", "DatasetEntry", "DownloadError", "DownloadInterrupted", "DownloadRequest", "FileEntry",
           "Outcome", "download", "load_manifest"]
