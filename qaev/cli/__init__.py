"""The ``qaev`` command line (entry point :func:`main`)."""
from qaev.cli.main import cli, main

__all__ = ["cli", "main"]
