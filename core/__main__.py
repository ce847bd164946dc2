"""`python -m core ...`: see core.cli."""

from core.cli import run

run()
