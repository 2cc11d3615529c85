"""``python -m pipeline`` (also what ``torchrun -m pipeline`` starts).

``python -m`` puts the working folder first on ``sys.path``; a ``cache/`` or ``stages/`` folder there (the
README's own ``--cache-dir cache`` makes one) or a ``numpy.py`` would then be imported in place of the real
one. The working folder is dropped before anything else is imported, unless it is the folder that holds
this project's packages. (A ``pipeline/`` folder in the working folder is found by ``python -m`` itself,
before this file runs: the ``pipeline`` command, or ``python -P -m pipeline``, avoids even that.)
"""

import os
import sys


def _drop_working_folder() -> None:
    ours = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    here = os.path.realpath(os.getcwd())
    if here != ours:
        sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or ".") != here]


_drop_working_folder()

from pipeline.cli import main  # noqa: E402

main()
