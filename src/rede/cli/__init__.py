"""The ``rede`` command line: thin commands over the public Python API, and the live view."""

from rede.cli.app import app, main

__all__ = ["app", "main"]
