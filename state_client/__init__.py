"""The State's own client: what an official runs on their own machine (issue 15).

It holds what must never reach the server: the State's private keys, the plaintext of its
exchanges. It may use the domain's rules (``domain/``), never the server's layers (``api``,
``infra``, ``projections``); the import-linter contracts in pyproject.toml hold it to that.

So far it has the building blocks only: encryption keys (:mod:`state_client.keys`) and the
exchange envelope (:mod:`state_client.envelope`); docs/e2e.md says what is not done yet.
"""
