"""The Merkle tree, checkpoints and signing keys, stored next to the chain (SQLite, PostgreSQL).

Tables, in the record's own database (PostgreSQL: the same schema):

* ``merkle_leaves (leaf_index, position, leaf_hash)``: leaf ``i`` of the tree is the ``i``-th
  stored event in position order (positions may have gaps, indexes have none);
* ``merkle_nodes (level, node_index, hash)``: every *perfect* subtree of ``2**level`` leaves,
  level ≥ 1, that the tree has completed; right-edge nodes are never stored (they change as
  the tree grows) but folded from perfect ones when a proof needs them;
* ``merkle_head (id = 1, tree_size, position, link)``: how far the tree goes, and the chain
  link of its last leaf;
* ``checkpoints (tree_size, verifier_key, root_hash, note, recorded_at)``: every signed
  checkpoint, as the exact note text;
* ``checkpoint_keys (verifier_key, first_used_at)``: every public key that ever signed one, so
  checkpoints signed before a key rotation stay verifiable.

The tree is brought up to date lazily (``catch_up``), in its own transactions and never in the
write path of events. It extends only over events whose links it has checked: each new event's
record is re-encoded and hashed and its link recomputed from the last leaf's link (the fast
walk of ``infra.chain``), so a checkpoint never signs a record that does not verify from the
tree's last leaf onwards, and a record that lost or rewrote events the tree already holds is
refused (``TreeDiverged``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.rows import tuple_row

from infra.chain import GENESIS_LINK, FastChainWalk, NeedsDetailedWalk
from infra.merkle import AuditError, CompactRange, NodeId
from infra.store import DDL_LOCK_KEY, text_as_stored

#: Events checked and added to the tree per transaction.
CATCH_UP_BATCH = 20000


class TreeError(AuditError):
    """The tree cannot be extended over the record as it now stands."""


class TreeDiverged(TreeError):
    """The record no longer holds the events the tree was built over (truncated/rewritten)."""


class RecordNotVerified(TreeError):
    """A new event or link does not verify, so the tree will not grow over it."""


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    position: int
    link: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    verifier_key: str
    root_hash: bytes
    note: str
    recorded_at: str


class Cursor(Protocol):
    def execute(self, statement: Any, params: Any = ...) -> Any: ...

    def executemany(self, statement: Any, params: Any) -> Any: ...

    def fetchall(self) -> Any: ...

    def fetchone(self) -> Any: ...


class TreeStore:
    """Backend-neutral logic; subclasses give the SQL dialect and the transactions."""

    #: Placeholder style of the driver.
    param = "%s"

    def __init__(self, recorder: Any, *, create: bool = True) -> None:
        """``create``: create the tables if missing. Without it (a read-only command) a
        record whose tables were never created has no checkpoints and no keys."""
        self.recorder = recorder
        self.events_table = self.qualify(recorder.events_table_name)
        self.chain_table = self.qualify(recorder.chain_table_name)
        self.leaves = self.qualify("merkle_leaves")
        self.nodes = self.qualify("merkle_nodes")
        self.head_table = self.qualify("merkle_head")
        self.checkpoints_table = self.qualify("checkpoints")
        self.keys_table = self.qualify("checkpoint_keys")
        if create:
            self.create_tables()
        self.has_tables = create or self.tables_exist()

    def tables_exist(self) -> bool:
        """Whether the checkpoint tables exist (they are created together)."""
        raise NotImplementedError

    # -- dialect ------------------------------------------------------------------------------

    def qualify(self, table: str) -> str:
        return table

    def sql(self, statement: str) -> str:
        return statement.replace("%s", self.param)

    def create_tables(self) -> None:
        raise NotImplementedError

    def table_names(self, **dialect: str) -> dict[str, str]:
        """What ``_TABLES`` is formatted with: the qualified names, and the dialect's types."""
        return dict(
            leaves=self.leaves,
            nodes=self.nodes,
            head=self.head_table,
            checkpoints=self.checkpoints_table,
            keys=self.keys_table,
            **dialect,
        )

    @contextmanager
    def read(self, *, snapshot: bool = True) -> Iterator[Cursor]:
        """A read-only cursor; with ``snapshot`` all its statements see one snapshot. Proofs
        need none: stored nodes never change once written."""
        raise NotImplementedError
        yield

    @contextmanager
    def writing(self) -> Iterator[Cursor]:
        """A transaction holding the tree's write lock from its first statement."""
        raise NotImplementedError
        yield

    def linked_page(self, c: Cursor, after: int, batch: int) -> Sequence[tuple[Any, ...]]:
        raise NotImplementedError

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        raise NotImplementedError

    # -- reads --------------------------------------------------------------------------------

    def head(self, c: Cursor | None = None) -> TreeHead:
        if c is None:
            with self.read() as c:
                return self.head(c)
        c.execute(f"SELECT tree_size, position, link FROM {self.head_table} WHERE id = 1")
        row = c.fetchone()
        if row is None:
            return TreeHead(0, 0, GENESIS_LINK)
        return TreeHead(int(row[0]), int(row[1]), bytes(row[2]))

    def size(self) -> int:
        return self.head().tree_size

    def fetch_nodes(self, ids: Sequence[NodeId], c: Cursor | None = None) -> dict[NodeId, bytes]:
        """Hashes of perfect subtrees (level 0: leaves), in one query for any number of ids."""
        if c is None:
            with self.read() as c:
                return self.fetch_nodes(ids, c)
        c.execute(*self.nodes_query(ids))
        found = {(int(level), int(i)): bytes(h) for level, i, h in c.fetchall()}
        missing = [node for node in ids if node not in found]
        if missing:
            raise TreeDiverged(
                "the stored Merkle tree lacks nodes it should hold",
                expected=f"node {missing[0]}",
                computed="none",
            )
        return found

    def nodes_query(self, ids: Sequence[NodeId]) -> tuple[str, list[int]]:
        """One statement reading the given subtrees as rows ``(level, index, hash)``."""
        leaves = [i for level, i in ids if level == 0]
        inner = [(level, i) for level, i in ids if level > 0]
        parts, params = ["SELECT 0, 0, NULL WHERE 1 = 0"], []
        if leaves:
            marks = ",".join([self.param] * len(leaves))
            parts.append(
                f"SELECT 0, leaf_index, leaf_hash FROM {self.leaves} WHERE leaf_index IN ({marks})"
            )
            params.extend(leaves)
        if inner:
            pair = f"(level = {self.param} AND node_index = {self.param})"
            parts.append(
                f"SELECT level, node_index, hash FROM {self.nodes} "
                f"WHERE {' OR '.join([pair] * len(inner))}"
            )
            params.extend(v for node in inner for v in node)
        return " UNION ALL ".join(parts), params

    def leaf_range(self, start: int, count: int) -> list[tuple[int, bytes]]:
        """(position, leaf hash) of leaves ``start`` to ``start + count - 1``, in one query,
        as many of them as the tree holds (a level-0 tile, or where an entry bundle starts)."""
        with self.read(snapshot=False) as c:
            c.execute(
                self.sql(
                    f"SELECT position, leaf_hash FROM {self.leaves} "
                    "WHERE leaf_index >= %s AND leaf_index < %s ORDER BY leaf_index"
                ),
                (start, start + count),
            )
            return [(int(p), bytes(h)) for p, h in c.fetchall()]

    def node_range(self, level: int, start: int, count: int) -> list[bytes]:
        """Hashes of the perfect subtrees ``start`` to ``start + count - 1`` of ``2**level``
        leaves (``level`` ≥ 1), in one query, as many as the tree holds: a tlog-tiles tile
        above level 0 is such a run of ``merkle_nodes``."""
        with self.read(snapshot=False) as c:
            c.execute(
                self.sql(
                    f"SELECT hash FROM {self.nodes} WHERE level = %s "
                    "AND node_index >= %s AND node_index < %s ORDER BY node_index"
                ),
                (level, start, start + count),
            )
            return [bytes(r[0]) for r in c.fetchall()]

    def leaf(self, index: int) -> tuple[int, bytes] | None:
        """(position, leaf hash) of leaf ``index``, or None."""
        with self.read() as c:
            c.execute(
                self.sql(f"SELECT position, leaf_hash FROM {self.leaves} WHERE leaf_index = %s"),
                (index,),
            )
            row = c.fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def index_of(self, position: int) -> int | None:
        with self.read() as c:
            c.execute(
                self.sql(f"SELECT leaf_index FROM {self.leaves} WHERE position = %s"), (position,)
            )
            row = c.fetchone()
        return None if row is None else int(row[0])

    def chain_leaf_hashes(self, limit: int, batch: int = 10000) -> Iterator[bytes]:
        """The first ``limit`` leaf hashes of the chain table itself (not of the tree), in
        position order, from one snapshot: what an auditor recomputes a checkpoint's root from
        after the chain walk has checked them."""
        with self.read() as c:
            after, sent = -(2**63), 0
            while sent < limit:
                c.execute(
                    self.sql(
                        f"SELECT position, leaf_hash FROM {self.chain_table} "
                        "WHERE position > %s ORDER BY position LIMIT %s"
                    ),
                    (after, min(batch, limit - sent)),
                )
                rows = c.fetchall()
                if not rows:
                    return
                for _, leaf in rows:
                    yield bytes(leaf)
                sent += len(rows)
                after = rows[-1][0]

    # -- catching up --------------------------------------------------------------------------

    def chain_head_position(self) -> int:
        with self.read() as c:
            c.execute(f"SELECT MAX(position) FROM {self.chain_table}")
            row = c.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def catch_up(self, batch: int = CATCH_UP_BATCH) -> int:
        """Extend the tree over every event linked since it was last extended; return its
        size. Raises ``TreeDiverged`` or ``RecordNotVerified`` and leaves the tree unchanged
        from that batch on if the record does not verify."""
        head = self.head()
        if self.chain_head_position() == head.position and not self._diverged_from(head):
            return head.tree_size
        while True:
            with self.writing() as c:
                head = self.head(c)
                self._check_tree_base(c, head)
                rows = self.linked_page(c, head.position, batch)
                if rows:
                    self._extend(c, head, rows)
            if len(rows) < batch:
                return self.size()

    def _diverged_from(self, head: TreeHead) -> bool:
        if head.tree_size == 0:
            return False
        with self.read() as c:
            c.execute(
                self.sql(f"SELECT link FROM {self.chain_table} WHERE position = %s"),
                (head.position,),
            )
            row = c.fetchone()
        return row is None or bytes(row[0]) != head.link

    def _check_tree_base(self, c: Cursor, head: TreeHead) -> None:
        if head.tree_size == 0:
            return
        c.execute(
            self.sql(f"SELECT link FROM {self.chain_table} WHERE position = %s"), (head.position,)
        )
        row = c.fetchone()
        if row is None:
            raise TreeDiverged(
                f"the record no longer holds position {head.position}, the last of the "
                f"{head.tree_size} events in the Merkle tree: events were deleted",
                expected=f"a link at position {head.position}",
                computed="none",
            )
        if bytes(row[0]) != head.link:
            raise TreeDiverged(
                f"the link at position {head.position}, the last of the {head.tree_size} events "
                "in the Merkle tree, changed: the history was rewritten",
                expected=f"link {head.link.hex()}",
                computed=f"link {bytes(row[0]).hex()}",
            )

    def _extend(self, c: Cursor, head: TreeHead, rows: Sequence[tuple[Any, ...]]) -> None:
        walk = FastChainWalk(self.recorder.id_spelling)
        walk.head_position, walk.head_link = head.position, head.link
        try:
            walk.check_page(rows)
        except NeedsDetailedWalk:
            raise RecordNotVerified(
                f"an event or link after position {head.position} does not verify; the Merkle "
                "tree is not extended over it (run pocdir verify to name the fault)",
                expected="an intact chain",
                computed="a fault",
            ) from None
        frontier_ids = CompactRange.node_ids(head.tree_size)
        frontier = self.fetch_nodes(frontier_ids, c) if frontier_ids else {}
        nodes: list[tuple[int, int, bytes]] = []
        tree = CompactRange(
            head.tree_size,
            [frontier[i] for i in frontier_ids],
            on_node=lambda level, index, value: nodes.append((level, index, value)),
        )
        leaves: list[tuple[int, int, bytes]] = []
        for row in rows:
            leaf = bytes(row[6])
            leaves.append((tree.size, row[0], leaf))
            tree.append(leaf)
        c.executemany(self.sql(f"INSERT INTO {self.leaves} VALUES (%s, %s, %s)"), leaves)
        if nodes:
            c.executemany(self.sql(f"INSERT INTO {self.nodes} VALUES (%s, %s, %s)"), nodes)
        c.execute(
            self.sql(
                f"UPDATE {self.head_table} SET tree_size = %s, position = %s, link = %s "
                "WHERE id = 1"
            ),
            (tree.size, walk.head_position, walk.head_link),
        )

    # -- checkpoints and keys -----------------------------------------------------------------

    def record_checkpoint(self, checkpoint: StoredCheckpoint) -> StoredCheckpoint:
        """Store a checkpoint and its key; a checkpoint of the same size by the same key is
        kept as first recorded (Ed25519 is deterministic, so it is the same note)."""
        with self.writing() as c:
            c.execute(
                self.sql(f"SELECT 1 FROM {self.keys_table} WHERE verifier_key = %s"),
                (checkpoint.verifier_key,),
            )
            if c.fetchone() is None:
                c.execute(
                    self.sql(f"INSERT INTO {self.keys_table} VALUES (%s, %s)"),
                    (checkpoint.verifier_key, checkpoint.recorded_at),
                )
            existing = self._checkpoint(c, checkpoint.tree_size, checkpoint.verifier_key)
            if existing is not None:
                return existing
            c.execute(
                self.sql(f"INSERT INTO {self.checkpoints_table} VALUES (%s, %s, %s, %s, %s)"),
                (
                    checkpoint.tree_size,
                    checkpoint.verifier_key,
                    checkpoint.root_hash,
                    checkpoint.note,
                    checkpoint.recorded_at,
                ),
            )
        return checkpoint

    _CHECKPOINT_COLUMNS = "tree_size, verifier_key, root_hash, note, recorded_at"

    def _checkpoint(self, c: Cursor, size: int, key: str) -> StoredCheckpoint | None:
        c.execute(
            self.sql(
                f"SELECT {self._CHECKPOINT_COLUMNS} FROM {self.checkpoints_table} "
                "WHERE tree_size = %s AND verifier_key = %s"
            ),
            (size, key),
        )
        row = c.fetchone()
        return None if row is None else _checkpoint_row(row)

    def checkpoints(self, size: int | None = None) -> list[StoredCheckpoint]:
        if not self.has_tables:
            return []
        """All checkpoints (or those of one size), oldest first."""
        where = "" if size is None else "WHERE tree_size = %s"
        with self.read() as c:
            c.execute(
                self.sql(
                    f"SELECT {self._CHECKPOINT_COLUMNS} FROM {self.checkpoints_table} {where} "
                    "ORDER BY tree_size, recorded_at"
                ),
                () if size is None else (size,),
            )
            return [_checkpoint_row(r) for r in c.fetchall()]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.read() as c:
            c.execute(
                f"SELECT {self._CHECKPOINT_COLUMNS} FROM {self.checkpoints_table} "
                "ORDER BY tree_size DESC, recorded_at DESC LIMIT 1"
            )
            row = c.fetchone()
        return None if row is None else _checkpoint_row(row)

    def verifier_keys(self) -> list[str]:
        if not self.has_tables:
            return []
        with self.read() as c:
            c.execute(
                f"SELECT verifier_key FROM {self.keys_table} ORDER BY first_used_at, verifier_key"
            )
            return [str(r[0]) for r in c.fetchall()]


def _checkpoint_row(row: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(int(row[0]), str(row[1]), bytes(row[2]), str(row[3]), str(row[4]))


_TABLES = (
    "CREATE TABLE IF NOT EXISTS {leaves} (leaf_index {int} PRIMARY KEY, "
    "position {int} NOT NULL UNIQUE, leaf_hash {blob} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {nodes} (level {int} NOT NULL, node_index {int} NOT NULL, "
    "hash {blob} NOT NULL, PRIMARY KEY (level, node_index)){without_rowid}",
    "CREATE TABLE IF NOT EXISTS {head} (id {int} PRIMARY KEY CHECK (id = 1), "
    "tree_size {int} NOT NULL, position {int} NOT NULL, link {blob} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {checkpoints} (tree_size {int} NOT NULL, "
    "verifier_key TEXT NOT NULL, root_hash {blob} NOT NULL, note TEXT NOT NULL, "
    "recorded_at TEXT NOT NULL, PRIMARY KEY (tree_size, verifier_key))",
    "CREATE TABLE IF NOT EXISTS {keys} (verifier_key TEXT PRIMARY KEY, "
    "first_used_at TEXT NOT NULL)",
)


class SQLiteTreeStore(TreeStore):
    param = "?"

    def __init__(self, recorder: Any, *, create: bool = True) -> None:
        self.datastore: SQLiteDatastore = recorder.datastore
        super().__init__(recorder, create=create)

    def tables_exist(self) -> bool:
        with self.read() as c:
            c.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                ("checkpoints", "checkpoint_keys"),
            )
            return int(c.fetchone()[0]) == 2

    def create_tables(self) -> None:
        names = self.table_names(int="INTEGER", blob="BLOB", without_rowid=" WITHOUT ROWID")
        with self.datastore.transaction(commit=True) as c:
            for statement in _TABLES:
                c.execute(statement.format(**names))
            c.execute(
                f"INSERT OR IGNORE INTO {self.head_table} VALUES (1, 0, 0, ?)", (GENESIS_LINK,)
            )

    @contextmanager
    def read(self, *, snapshot: bool = True) -> Iterator[Cursor]:
        with self.datastore.transaction(commit=False) as c:
            yield c

    @contextmanager
    def writing(self) -> Iterator[Cursor]:
        with self.datastore.transaction(commit=True) as c:
            # The first statement writes, so the transaction takes SQLite's write lock now
            # (waiting for other writers), and reads a snapshot no older than that lock.
            c.execute(f"UPDATE {self.head_table} SET tree_size = tree_size WHERE id = 1")
            yield c

    def linked_page(self, c: Cursor, after: int, batch: int) -> Sequence[tuple[Any, ...]]:
        with text_as_stored(c):  # type: ignore[arg-type]
            c.execute(self.recorder.select_linked_page, (after + 1, batch))
            return [tuple(r) for r in c.fetchall()]

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        with self.read() as c:
            c.execute(
                f"SELECT rowid FROM {self.events_table} "
                "WHERE originator_id = ? AND originator_version = ?",
                (aggregate_id.hex, version),
            )
            row = c.fetchone()
        return None if row is None else int(row[0])


class PostgresTreeStore(TreeStore):
    def __init__(self, recorder: Any, *, create: bool = True) -> None:
        self.datastore: PostgresDatastore = recorder.datastore
        super().__init__(recorder, create=create)

    def tables_exist(self) -> bool:
        with self.read() as c:
            c.execute(
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = %s "
                "AND tablename IN ('checkpoints', 'checkpoint_keys')",
                (self.datastore.schema,),
            )
            row = c.fetchone()
            return row is not None and int(row[0]) == 2

    def qualify(self, table: str) -> str:
        schema = self.datastore.schema.replace('"', '""')
        return f'"{schema}"."{table}"'

    def create_tables(self) -> None:
        names = self.table_names(int="bigint", blob="bytea", without_rowid="")
        with self.write_connection() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
            for statement in _TABLES:
                c.execute(statement.format(**names))
            c.execute(
                f"INSERT INTO {self.head_table} VALUES (1, 0, 0, %s) ON CONFLICT DO NOTHING",
                (GENESIS_LINK,),
            )

    @contextmanager
    def write_connection(self) -> Iterator[Cursor]:
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row, binary=True) as c,
        ):
            yield c

    @contextmanager
    def read(self, *, snapshot: bool = True) -> Iterator[Cursor]:
        if not snapshot:  # one statement at a time, no BEGIN/COMMIT round trips
            with (
                self.datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row, binary=True) as c,
            ):
                yield c
            return
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row, binary=True) as c,
        ):
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield c

    @contextmanager
    def writing(self) -> Iterator[Cursor]:
        with self.write_connection() as c:
            # Serialises tree writers; plain reads (ACCESS SHARE) go on.
            c.execute(f"LOCK TABLE {self.head_table} IN EXCLUSIVE MODE")
            yield c

    def linked_page(self, c: Cursor, after: int, batch: int) -> Sequence[tuple[Any, ...]]:
        c.execute(self.recorder.select_linked_page, (after + 1, batch))
        return list(c.fetchall())

    def nodes_query(self, ids: Sequence[NodeId]) -> tuple[str, list[Any]]:  # type: ignore[override]
        """The same text for any ids (arrays as parameters), so PostgreSQL plans it once and
        psycopg prepares it; a list of ORs would cost more to plan than to run."""
        leaves = [i for level, i in ids if level == 0]
        inner = [(level, i) for level, i in ids if level > 0]
        return (
            f"SELECT 0::bigint, leaf_index, leaf_hash FROM {self.leaves} "
            "WHERE leaf_index = ANY(%s::bigint[]) "
            f"UNION ALL SELECT n.level, n.node_index, n.hash FROM {self.nodes} n "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS w(level, node_index) "
            "USING (level, node_index)",
            [leaves, [lv for lv, _ in inner], [i for _, i in inner]],
        )

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        with self.read() as c:
            c.execute(
                f"SELECT notification_id FROM {self.events_table} "
                "WHERE originator_id = %s AND originator_version = %s",
                (aggregate_id, version),
            )
            row = c.fetchone()
        return None if row is None else int(row[0])


def build_tree_store(recorder: Any, *, create: bool = True) -> TreeStore:
    """The tree store for the application's chained recorder (SQLite or PostgreSQL);
    ``create``: create its tables if missing (not for a read-only command)."""
    if isinstance(recorder.datastore, SQLiteDatastore):
        return SQLiteTreeStore(recorder, create=create)
    return PostgresTreeStore(recorder, create=create)
