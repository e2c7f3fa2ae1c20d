"""Interfaces to pocdir: the command line (and, later, HTTP)."""
