"""The command line: `bmc` and its commands (a surface; SPEC section 8)."""

from bmc.cli.commands import cli, main

__all__ = ["cli", "main"]
