"""What several test modules share, in one place: a database per test (``db``), the usual
writes, such as "FRA notifies DEU" (``builders``), an API client (``http``), the ``pocdir``
command run as a process (``cli``), a throwaway PostgreSQL cluster (``cluster``), the audit
document's worked example (``audit_doc``), headless Chromium's flags (``browser``) and a slow
view recorder for the writer-process test (``slow_view``). Fixtures stay in
``tests/conftest.py``; no test module imports another test module."""
