"""`python -m audiodiff` runs the CLI."""
from audiodiff.cli import main

main()
