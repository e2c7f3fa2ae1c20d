"""The pocdir domain: aggregates, rules R1-R17 and the application service.

The domain imports nothing from ``api`` or ``infra``: it is persisted and served by them.
"""
