"""A torchrun worker that runs ``pipeline`` but kills itself (SIGKILL) after writing some image blocks.

Usage: torchrun ... -m tests.extract.dying_rank extract ...  with DIE_RANK (which rank dies) and DIE_AFTER
(after how many image feature blocks) in the environment. Every other rank runs ``pipeline`` unchanged.
"""

from __future__ import annotations

import os
import signal

from cache.writer import BlockArray
from pipeline.cli import main


def die_after(blocks: int) -> None:
    """Make this process SIGKILL itself right after its ``blocks``-th image feature block is written."""
    original = BlockArray.write
    written = 0

    def write(self: BlockArray, index: tuple[int, ...], data) -> None:
        nonlocal written
        original(self, index, data)
        if self.name.startswith("image/") and self.name.endswith("/features"):
            written += 1
            if written >= blocks:
                os.kill(os.getpid(), signal.SIGKILL)

    BlockArray.write = write


if __name__ == "__main__":
    if os.environ.get("RANK") == os.environ["DIE_RANK"]:
        die_after(int(os.environ["DIE_AFTER"]))
    main()
