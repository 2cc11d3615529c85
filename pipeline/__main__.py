"""``python -m pipeline`` (also what ``torchrun -m pipeline`` starts)."""

from pipeline.cli import main

main()
