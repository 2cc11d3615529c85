"""A real HTTP server on 127.0.0.1 (standard library, in a thread) and archives in the datasets' published layouts.

The server serves bytes registered per path, honours ``Range: bytes=N-`` (206), records every request with its
Range header, and can cut a response mid-file (headers promise the whole file, half is sent, the socket closes),
stall one (part is sent, then nothing until the test ends) or send an endless body with no Content-Length.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import socket

import pytest
from PIL import Image

from stages.extract.download.staging import Staging

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every connection a download test opens must go to this machine: anything else fails the test."""
    real = socket.create_connection

    def loopback_only(address, *args, **kwargs):
        if address[0] not in _LOOPBACK:
            raise AssertionError(f"a download test tried to reach {address[0]}: tests must stay offline")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)


@dataclass
class Served:
    """What the server knows: files by URL path, requests seen, paths whose next response is cut."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    cut_next: dict[str, int] = field(default_factory=dict)  # path -> bytes to send before cutting (once)
    types: dict[str, str] = field(default_factory=dict)  # path -> Content-Type (default octet-stream)
    stall_next: dict[str, int] = field(default_factory=dict)  # path -> bytes to send before stalling (once)
    endless: set[str] = field(default_factory=set)  # paths answered with zeros, no Content-Length, until cut
    sent: dict[str, int] = field(default_factory=dict)  # path -> body bytes sent (endless bodies)
    released: threading.Event = field(default_factory=threading.Event)  # set at teardown: stalls end
    base: str = ""

    def add(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path``; returns its full URL."""
        self.files[path] = data
        return self.base + path

    def ranged(self) -> list[tuple[str, str]]:
        return [(path, header) for path, header in self.requests if header]


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:  # the client hung up (a refused download): not the server's failure
            pass

    def do_GET(self) -> None:
        served = self.served
        path = self.path.split("?")[0]
        header = self.headers.get("Range")
        served.requests.append((path, header))
        if path in served.endless:
            self._endless(path)
            return
        if path not in served.files:
            self.send_error(404, "Not Found")
            return
        data = served.files[path]
        start = 0
        if header and header.startswith("bytes=") and header.endswith("-"):
            start = int(header[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", served.types.get(path, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        stall = served.stall_next.pop(path, None)
        if stall is not None:
            self.wfile.write(body[:stall])
            self.wfile.flush()
            served.released.wait(120)
            return
        cut = served.cut_next.pop(path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()
            return
        self.wfile.write(body)

    def _endless(self, path: str) -> None:
        """200 with no Content-Length (HTTP/1.0: the body ends when the connection closes), zeros until the client
        stops reading (at most 1 GiB, so a client that never stops fails its test instead of hanging it)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        chunk = bytes(64 << 10)
        self.served.sent[path] = 0
        try:
            while self.served.sent[path] < (1 << 30):
                self.wfile.write(chunk)
                self.served.sent[path] += len(chunk)
        except OSError:  # the client closed the connection
            pass


@pytest.fixture
def server():
    """A running HTTP server on 127.0.0.1 (random port) and its ``Served`` state; shut down after the test."""
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    served.released.set()
    httpd.shutdown()
    httpd.server_close()


def jpeg(color: tuple[int, int, int] = (90, 140, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(out, format="JPEG")
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundled_split(name: str) -> dict:
    """The CoOp split file the package ships (``split_zhou_*.json.xz``), as JSON."""
    raw = resources.files("stages.extract.download").joinpath("splits", name + ".xz").read_bytes()
    return json.loads(lzma.decompress(raw))


def listed(split: dict) -> list[str]:
    return [row[0] for rows in split.values() for row in rows]


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    """A tar archive (gzip by default) holding ``members`` (path -> content) as regular files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def staging_of(data: Path, key: str) -> Path:
    """``key``'s staging folder as `pipeline download` makes it (marker included), for tests that plant files in it."""
    return Staging.open(data, key, key).root


def write_manifest(path: Path, entries: dict) -> Path:
    path.write_text(json.dumps(entries))
    return path


def small_split(paths_by_class: dict[str, list[str]]) -> dict:
    """A CoOp-form split: per class, its paths dealt round-robin into train, val, test."""
    split = {"train": [], "val": [], "test": []}
    for label, (cls, paths) in enumerate(paths_by_class.items()):
        for pos, path in enumerate(paths):
            split[("train", "val", "test")[pos % 3]].append([path, label, cls])
    return split
