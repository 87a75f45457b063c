"""`python -m judge` (and `torchrun -m judge`) runs the CLI."""

from judge.cli import main

main()
