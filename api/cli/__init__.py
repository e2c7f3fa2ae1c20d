"""The ``pocdir`` command line, as a package that imports downward only.

``main`` assembles the typer app from the command modules in ``commands/``; those use the
shared helpers beside this file (``session`` opens the record for one command, ``ids``
resolves id prefixes, ``errors`` is the one mapping from errors to exit codes, ``console``
the one console, JSON printer and console principal, ``options`` the shared options). No
module imports one above it. The entry point is ``api.cli.main:main``.
"""
