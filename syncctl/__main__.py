"""`python -m syncctl` runs the command line."""

from syncctl.cli import main

main()
