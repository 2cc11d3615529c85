"""The cost of the safe unpacker of ``pipeline download`` (issue 22) against the standard library's own extraction.

The unpacker reads a tar as one stream to its end (checksums), checks every folder of every path for links,
counts every byte against the archive's budget and writes each file as ``NAME.part`` then renames it. This
builds a tar.gz and a zip of ``--files`` incompressible ``--kib`` KiB files in 40 class folders (like a
JPEG dataset) and times ``unpack`` against ``tarfile.extractall(filter="data")`` and
``zipfile.extractall``, alternating, on the project's disk.

    .venv/bin/python benchmarks/unpack_cost.py [--files 2000] [--kib 24] [--rounds 3]
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import click

from common import table, write_result


def build(folder: Path, files: int, kib: int) -> dict[str, Path]:
    """A tar.gz and a zip of the same ``files`` random members."""
    members = {f"data/class_{n % 40:02d}/{n:06d}.jpg": os.urandom(kib * 1024) for n in range(files)}
    tar_path, zip_path = folder / "a.tar.gz", folder / "a.zip"
    with tarfile.open(tar_path, "w:gz", compresslevel=6) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return {"tar.gz": tar_path, "zip": zip_path}


def reference(archive: Path, target: Path) -> None:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
    else:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter="data")


def timed(run, archive: Path, target: Path) -> float:
    start = time.perf_counter()
    run(archive, target)
    seconds = time.perf_counter() - start
    shutil.rmtree(target)
    return seconds


@click.command()
@click.option("--files", default=2000, show_default=True)
@click.option("--kib", default=24, show_default=True)
@click.option("--rounds", default=3, show_default=True)
def main(files: int, kib: int, rounds: int) -> None:
    from stages.extract.download.unpack import unpack

    result: dict[str, object] = {"files": files, "kib": kib, "rounds": rounds}
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as folder:  # the project's disk, not a tmpfs
        for kind, archive in build(Path(folder), files, kib).items():
            times: dict[str, list[float]] = {"unpack": [], "stdlib": []}
            for _ in range(rounds):
                times["unpack"].append(timed(unpack, archive, Path(folder) / "out"))
                times["stdlib"].append(timed(reference, archive, Path(folder) / "out"))
            ours, theirs = statistics.median(times["unpack"]), statistics.median(times["stdlib"])
            mib = files * kib / 1024
            result[kind] = {"archive_bytes": archive.stat().st_size, "seconds_unpack": times["unpack"],
                            "seconds_stdlib": times["stdlib"], "mib_per_s_unpack": round(mib / ours, 1),
                            "mib_per_s_stdlib": round(mib / theirs, 1), "ratio": round(ours / theirs, 3)}
            rows.append((f"{kind}: unpack / stdlib (median s)", f"{ours:.2f} / {theirs:.2f} = {ours / theirs:.2f}x, "
                                                                 f"{mib / ours:.0f} vs {mib / theirs:.0f} MiB/s"))
    print(table(rows))
    print(f"wrote {write_result('unpack_cost', result)}")


if __name__ == "__main__":
    main()
