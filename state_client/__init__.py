"""The State's own client: what an official runs on their own machine (issue 15).

It holds what must never reach the server: the State's private keys, the plaintext of its
exchanges. It may use the domain's rules (``domain/``), never the server's layers (``api``,
``infra``, ``projections``); the import-linter contracts in pyproject.toml hold it to that.

Its parts: encryption keys (:mod:`state_client.keys`), the exchange envelope
(:mod:`state_client.envelope`), the official's key store (:mod:`state_client.store`), which
other States' keys it encrypts to (:mod:`state_client.trust`), the HTTP client that signs and
seals (:mod:`state_client.client`) and the ``pocdir-state`` command (:mod:`state_client.cli`);
docs/e2e.md, "The State client".
"""
