"""``python -m rede``: the ``rede`` command, for when the console script is not on PATH."""

from rede.cli.app import main

main()
