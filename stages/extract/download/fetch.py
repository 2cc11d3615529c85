"""Fetch one file over HTTP(S) (urllib only), resumable with Range requests, checked before it gets its real name.

A file is written to ``NAME.part`` and renamed to ``NAME`` only after its checksum passed, so a file under its
real name is always complete and verified. An interrupted transfer (connection cut, timeout, kill) leaves the
``.part`` file; the next attempt asks for the rest with ``Range: bytes=N-``. Mirrors (``--mirror URL``) are
tried first, by file name; a local folder works as a mirror too. A transfer stops at the file's size bound
(``limits.Limits.download_bound``: the manifest's ``approx_bytes`` with a margin, else the Content-Length);
a file past it is deleted, whatever the host sends.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import socket
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import urlsplit
from urllib.request import url2pathname

from stages.extract.download.errors import DownloadError
from stages.extract.download.limits import DEFAULT_MAX_BYTES, DOWNLOAD_ENV, Limits, SizeLimitError
from stages.extract.download.manifest import FileEntry
from stages.extract.download.progress import ByteProgress, human_bytes

CHUNK = 1 << 20
USER_AGENT = "cmm-pipeline-download/1 (+urllib)"
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)


def part_path(path: Path) -> Path:
    """Where a file is written while it is incomplete or unverified."""
    return path.with_name(path.name + ".part")


def file_digests(path: Path, algorithms: list[str]) -> dict[str, str]:
    """{algorithm: hex digest} of the file at ``path``, read once."""
    hashes = {algo: hashlib.new(algo) for algo in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            for digest in hashes.values():
                digest.update(chunk)
    return {algo: digest.hexdigest() for algo, digest in hashes.items()}


def disk_full(path: Path, exc: OSError) -> DownloadError:
    """The one-line error for a full disk while writing ``path``."""
    return DownloadError(f"disk full while writing {path} ({exc.strerror}) — free some space on that disk or choose "
                         "another --data-root, then rerun: finished files are kept and the download resumes")


class _NotFound(Exception):
    """The candidate URL does not have the file (HTTP 4xx, or no such file in a local mirror)."""


class _WebPage(Exception):
    """The host answered with a web page instead of the file (login, quota or confirmation page)."""


@dataclass
class Fetcher:
    """Fetches manifest files into a folder; ``attempts`` tries per URL with resume, ``backoff`` seconds between."""

    mirrors: tuple[str, ...] = ()
    echo: Callable[[str], None] = print
    attempts: int = 4
    backoff: float = 2.0
    timeout: float = 60.0
    free_bytes: Callable[[Path], int] = field(default=lambda path: shutil.disk_usage(path).free)
    limits: Limits = field(default_factory=Limits.from_env)

    def candidates(self, entry: FileEntry) -> list[str]:
        """Mirror locations of the file (by its name) first, then its manifest URL."""
        urls = []
        for mirror in self.mirrors:
            if urlsplit(mirror).scheme in ("http", "https", "file"):
                urls.append(mirror.rstrip("/") + "/" + entry.name)
            else:
                urls.append(str(Path(mirror).expanduser() / entry.name))
        return urls + [entry.url]

    def fetch(self, entry: FileEntry, folder: Path) -> bool:
        """Put ``folder/entry.name`` in place, fetched and checked; False when it was already there (nothing fetched).

        A file kept from an earlier run is checked again (the manifest may have changed since); one that no
        longer matches is deleted and fetched again.
        """
        final = folder / entry.name
        if final.is_file():
            expected = entry.checksums
            if not expected or file_digests(final, sorted(expected)) == expected:
                return False
            self.echo(f"  {entry.name}: the kept file does not match the manifest's checksum; fetching it again")
            final.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        partial = part_path(final)
        failures: list[str] = []
        candidates = self.candidates(entry)
        for position, url in enumerate(candidates, 1):
            try:
                self._fetch_from(url, entry, partial)
            except _NotFound as exc:
                failures.append(f"{_host(url)}: {exc}")
                continue
            except _WebPage as exc:
                failures.append(f"{_host(url)}: {exc}")
                continue
            except _TRANSIENT as exc:
                failures.append(f"{_host(url)}: {_reason(exc)}")
                continue
            except SizeLimitError as exc:
                partial.unlink(missing_ok=True)
                if position == len(candidates):
                    raise
                self.echo(f"  {exc}; trying the next location")
                failures.append(f"{_host(url)}: too large")
                continue
            try:
                self._check(entry, partial, url)
            except DownloadError as exc:
                if position == len(candidates):
                    raise
                self.echo(f"  {exc}; trying the next location")  # a bad mirror copy: the next one may be good
                failures.append(f"{_host(url)}: checksum mismatch")
                continue
            os.replace(partial, final)
            return True
        tried = "; ".join(failures)
        raise DownloadError(f"{entry.name}: could not fetch it ({tried}) — retry later (a partial file resumes), or "
                            f"pass --mirror URL of a host or folder that has {entry.name}")

    def _fetch_from(self, url: str, entry: FileEntry, partial: Path) -> None:
        """Fill ``partial`` from ``url``, resuming after cuts; raises on a failure that retrying will not fix."""
        last: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * attempt)
            try:
                if self._transfer(url, entry, partial):
                    return
                last = ConnectionError("the connection closed before the end of the file")
            except _TRANSIENT as exc:
                if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code not in (408, 429):
                    raise _NotFound(f"HTTP {exc.code} {exc.reason}") from None
                last = exc
        assert last is not None
        raise last

    def _transfer(self, url: str, entry: FileEntry, partial: Path) -> bool:
        """One request for the rest of the file; True when the whole file is in ``partial``."""
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):  # a local folder mirror, or a file:// URL
            return self._copy_local(Path(url2pathname(urlsplit(url).path)) if scheme == "file" else Path(url),
                                    entry, partial)
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # asked past the end: the part holds the whole file (the checksum decides)
                return True
            raise
        with response:
            if response.headers.get_content_type() == "text/html" and not entry.name.endswith((".html", ".htm")):
                raise _WebPage("it answered with a web page, not the file (a login, quota or confirmation page)")
            status = response.status
            length = response.headers.get("Content-Length")
            if offset and status != 206:  # the server ignored the Range: start again
                offset = 0
            total = offset + int(length) if length is not None and length.isdigit() else None
            limit = self._bound(entry, total, url)
            self._check_space(partial, (total - offset) if total is not None else entry.approx_bytes)
            # unbuffered: every byte received is on disk, nothing is left to fail at close; "ab": the part holds
            # exactly ``offset`` bytes
            with open(partial, "ab" if offset else "wb", buffering=0) as out:
                done = self._copy(response, out, partial, ByteProgress(entry.name, total, offset, self.echo), limit)
        return total is None or done >= total

    def _copy_local(self, source: Path, entry: FileEntry, partial: Path) -> bool:
        """Copy from a local mirror folder, resuming from the part's size."""
        if not source.is_file():
            raise _NotFound("no such file there")
        offset = partial.stat().st_size if partial.exists() else 0
        total = source.stat().st_size
        offset = offset if offset <= total else 0
        limit = self._bound(entry, total, str(source))
        self._check_space(partial, total - offset)
        with open(source, "rb") as src, open(partial, "ab" if offset else "wb", buffering=0) as out:
            src.seek(offset)
            self._copy(src, out, partial, ByteProgress(entry.name, total, offset, self.echo), limit)
        return True

    def _bound(self, entry: FileEntry, total: int | None, url: str) -> tuple[int, str]:
        """(the most bytes this file may have, why); SizeLimitError at once when the announced size is past it."""
        bound, rule = self.limits.download_bound(entry.approx_bytes)
        if bound is None:
            if total is not None:
                return total, "its Content-Length"
            return DEFAULT_MAX_BYTES, f"no size from the manifest or the host; set {DOWNLOAD_ENV} if you trust it"
        if total is not None and total > bound:
            raise SizeLimitError(f"{entry.name}: {_host(url)} announces {human_bytes(total)}, more than the "
                                 f"{human_bytes(bound)} allowed ({rule}) — not the published file; nothing was kept")
        return bound, rule

    def _copy(self, source: BinaryIO, out: BinaryIO, partial: Path, progress: ByteProgress,
              limit: tuple[int, str]) -> int:
        """Stream ``source`` into the unbuffered ``out`` with progress, the file never past ``limit`` (bytes, why);
        a cut connection keeps what arrived."""
        bound, rule = limit
        try:
            while chunk := source.read(CHUNK):
                if progress.done + len(chunk) > bound:
                    raise SizeLimitError(f"{partial.name[:-5]}: the host sent more than the {human_bytes(bound)} "
                                         f"allowed ({rule}) — not the published file; nothing was kept")
                view = memoryview(chunk)
                while view:
                    view = view[out.write(view):]
                progress.update(len(chunk))
            if stat.S_ISREG(os.fstat(out.fileno()).st_mode):
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(partial, exc) from None
            if not isinstance(exc, _TRANSIENT):
                raise
        except http.client.IncompleteRead:
            pass
        finally:
            progress.close()
        return progress.done

    def _check_space(self, partial: Path, needed: int | None) -> None:
        """Stop before writing when the disk cannot hold the rest of the file."""
        if needed is None:
            return
        free = self.free_bytes(partial.parent)
        if free < needed:
            raise DownloadError(f"{partial.parent}: not enough free space for {partial.name[:-5]} (needs "
                                f"{human_bytes(needed)} more, {human_bytes(free)} free) — free some space or "
                                "choose another --data-root")

    def _check(self, entry: FileEntry, partial: Path, url: str) -> None:
        """Compare the fetched file with its published checksums; a mismatch deletes it and stops."""
        expected = entry.checksums
        if not expected:
            return
        actual = file_digests(partial, sorted(expected))
        for algo, value in expected.items():
            if actual[algo] != value:
                partial.unlink()
                raise DownloadError(
                    f"{entry.name}: {algo} mismatch (expected {value}, got {actual[algo]}) for the file from "
                    f"{_host(url)} — it was deleted and nothing was unpacked; retry, or use --mirror with a good copy")


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or parts.path or url


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    return str(exc) or type(exc).__name__
