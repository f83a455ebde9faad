"""``python -m feedwatch`` runs the CLI."""

from feedwatch.cli import main

main()
