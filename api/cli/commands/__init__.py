"""The ``pocdir`` commands, one module per area; each adds its commands with ``register``."""
