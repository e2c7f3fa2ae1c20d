"""A throwaway PostgreSQL 15 cluster of the tests' own, on its own port, that a test may stop,
hang and start again (``POCDIR_TEST_PG_BIN`` says where its binaries are)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.cli import free_port

PG_BIN = Path(os.environ.get("POCDIR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the OS user that owns the cluster (PostgreSQL refuses to run as root)


@dataclass
class Cluster:
    """A PostgreSQL cluster of the tests' own (never the shared server), on its own port,
    trust auth."""

    datadir: Path
    sockdir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), *args]
        subprocess.run(as_postgres(cmd), check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-w", "-t", "60", "-l", str(self.sockdir / "log"), "-o", options, "start")

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def running(self) -> bool:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "status"]
        return subprocess.run(as_postgres(cmd), capture_output=True).returncode == 0

    def processes(self) -> list[int]:
        """The postmaster first, then every process it started."""
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    @contextmanager
    def hung(self) -> Iterator[Callable[[], None]]:
        """Every process of the cluster stopped (SIGSTOP) for the block: connections stay
        open, the port accepts, and nothing answers. Resumed (SIGCONT) on leaving, or earlier
        by the callable it yields."""
        stopped: list[int] = []

        def resume() -> None:
            while stopped:
                with suppress(ProcessLookupError):
                    os.kill(stopped.pop(), signal.SIGCONT)

        try:
            for pid in self.processes():
                with suppress(ProcessLookupError):  # a backend that ended meanwhile
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            yield resume
        finally:
            resume()


def as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *cmd]
    return cmd


def binaries_missing() -> str | None:
    """None if the PostgreSQL binaries are in ``PG_BIN``, else which are not."""
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / b).exists()]
    if missing:
        return f"PostgreSQL binaries missing in {PG_BIN}: {', '.join(missing)}"
    return None


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A new cluster in a temporary directory, started; stopped and removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="pocdir-outage-"))
    try:
        datadir, sockdir = tmp / "data", tmp / "run"
        sockdir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(tmp, PG_USER)
            shutil.chown(sockdir, PG_USER)
        initdb = [
            str(PG_BIN / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        ]
        subprocess.run(as_postgres(initdb), check=True, capture_output=True, timeout=120)
        c = Cluster(datadir, sockdir, free_port())
        c.start()
        try:
            yield c
        finally:
            if c.running():
                c.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
