"""Drives the application: a deterministic, seeded simulation of the directory in use, issuing
only the application service's real commands. Outside ``api/`` because it is not an interface:
the CLI's ``simulate`` command, the tests and the benchmarks use it to load a record."""
