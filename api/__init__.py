"""Interfaces to pocdir: the ``pocdir`` command line (``api.cli``) and the HTTP API
(``api.app`` builds it, one router per resource in ``api.routers``)."""
