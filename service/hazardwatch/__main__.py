"""`python -m hazardwatch` runs the command-line interface."""

from hazardwatch.cli import main

raise SystemExit(main())
