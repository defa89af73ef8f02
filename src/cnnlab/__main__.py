"""`python -m cnnlab` runs the command-line tool."""

from cnnlab.cli import main

main()
