"""What several test modules share, in one place: databases per test (``db``), the usual
writes (``builders``), an API client (``http``), the ``pocdir`` command (``cli``), a throwaway
PostgreSQL cluster (``cluster``), the audit document's worked example (``audit_doc``) and
headless Chromium's flags (``browser``). Fixtures stay in ``tests/conftest.py``; no test module
imports another test module."""
