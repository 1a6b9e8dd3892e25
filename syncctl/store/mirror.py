"""Mirrored Google collections: upsert and delete by natural key, and mark-and-sweep by generation.

Every synced-data table has `user_id`, zero or more further scope columns, one natural-key
column, an `etag`, data columns and `sync_generation`. A full sync writes every row it sees
with a new generation number (one above any stored in the scope) and, on its last page, deletes
the rows of that scope with an older one (`sweep`). A row's generation never goes down, so two
overlapping full syncs of one scope cannot sweep each other's rows. Counts compare the stored
row with the incoming one, so re-applying an unchanged row counts as neither added nor updated.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeCounts:
    """Rows added, updated and deleted by one unit of writes."""

    added: int = 0
    updated: int = 0
    deleted: int = 0

    def __add__(self, other: ChangeCounts) -> ChangeCounts:
        # Most pages of an incremental sync change nothing: adding nothing builds no new record.
        if not (other.added or other.updated or other.deleted):
            return self
        if not (self.added or self.updated or self.deleted):
            return other
        return ChangeCounts(
            self.added + other.added, self.updated + other.updated, self.deleted + other.deleted
        )


@dataclass(frozen=True)
class MirrorTable:
    """How one synced-data table is keyed: scope columns, natural key and data columns."""

    name: str
    scope_columns: tuple[str, ...]
    key_column: str
    data_columns: tuple[str, ...]

    def scope_where(self) -> str:
        return " AND ".join(f'"{column}" = ?' for column in self.scope_columns)


def next_generation(conn: sqlite3.Connection, table: MirrorTable, scope: Sequence[str]) -> int:
    """A generation number no row of this scope has yet (for a new full sync)."""
    return current_generation(conn, table, scope) + 1


def current_generation(conn: sqlite3.Connection, table: MirrorTable, scope: Sequence[str]) -> int:
    """The highest generation stored in this scope, 0 when the scope is empty."""
    row = conn.execute(
        f"SELECT coalesce(max(sync_generation), 0) FROM {table.name} WHERE {table.scope_where()}",
        list(scope),
    ).fetchone()
    return int(row[0])


def apply_changes(
    conn: sqlite3.Connection,
    table: MirrorTable,
    scope: Sequence[str],
    rows: Sequence[tuple],
    *,
    generation: int,
    removals: Iterable[str] = (),
    previous_keys: Mapping[str, Sequence[str]] | None = None,
) -> ChangeCounts:
    """Upsert rows `(key, *data_columns)` with `generation` and delete `removals` by key.

    `previous_keys` maps a row's key to keys it was known by before (a renamed resource): a
    stored row under an old key is replaced, and counts as one update rather than an add and
    a delete.
    """
    previous_keys = previous_keys or {}
    removal_set = set(removals)
    if not rows and not removal_set and not previous_keys:
        return ChangeCounts()  # an empty page (most incremental syncs): no statement at all
    wanted = {row[0] for row in rows} | removal_set
    for old_keys in previous_keys.values():
        wanted.update(old_keys)
    stored = _stored_rows(conn, table, scope, wanted)

    page_keys = {row[0] for row in rows}
    added = updated = 0
    consumed: set[str] = set()
    for row in rows:
        key, data = row[0], tuple(row[1:])
        before = stored.get(key)
        if before is not None:
            updated += before != data
        else:
            old = previous_keys.get(key, ())
            renamed_from = [k for k in old if k in stored and k not in page_keys]
            if renamed_from and renamed_from[0] not in consumed:
                consumed.add(renamed_from[0])
                updated += 1
            else:
                added += 1
        stored[key] = data
    for old_keys in previous_keys.values():
        removal_set.update(old_keys)
    removal_set -= page_keys

    if rows:
        conn.executemany(_upsert_sql(table), [(*scope, *row, generation) for row in rows])
    deleted = delete_keys(conn, table, scope, sorted(removal_set)) - len(consumed)
    return ChangeCounts(added, updated, deleted)


@functools.cache  # a handful of tables, each page of each sync asks
def _upsert_sql(table: MirrorTable) -> str:
    columns = [*table.scope_columns, table.key_column, *table.data_columns, "sync_generation"]
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    conflict = ", ".join(f'"{c}"' for c in (*table.scope_columns, table.key_column))
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in table.data_columns)
    # Never lower a row's generation: an overlapping newer full sync's mark must survive.
    updates += ", sync_generation = max(sync_generation, excluded.sync_generation)"
    return (
        f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
        f" ON CONFLICT({conflict}) DO UPDATE SET {updates}"
    )


def delete_keys(
    conn: sqlite3.Connection, table: MirrorTable, scope: Sequence[str], keys: Sequence[str]
) -> int:
    """Delete rows of this scope by natural key; returns how many existed."""
    if not keys:
        return 0
    cursor = conn.execute(
        f"DELETE FROM {table.name} WHERE {table.scope_where()}"
        f' AND "{table.key_column}" IN (SELECT value FROM json_each(?))',
        [*scope, json.dumps(list(keys))],
    )
    return cursor.rowcount


def swept_keys(
    conn: sqlite3.Connection, table: MirrorTable, scope: Sequence[str], generation: int
) -> list[str]:
    """Keys of this scope that a full sync of `generation` did not see."""
    rows = conn.execute(
        f'SELECT "{table.key_column}" FROM {table.name} WHERE {table.scope_where()}'
        " AND sync_generation < ?",
        [*scope, generation],
    )
    return [key for (key,) in rows]


def count_rows(
    conn: sqlite3.Connection,
    table: MirrorTable,
    scope: Sequence[str],
    *,
    older_than: int | None = None,
    keys: Sequence[str] | None = None,
) -> int:
    """Rows of this scope (only those of a generation below `older_than`, or among `keys`)."""
    where, params = table.scope_where(), list(scope)
    if older_than is not None:
        where, params = f"{where} AND sync_generation < ?", [*params, older_than]
    if keys is not None:
        where = f'{where} AND "{table.key_column}" IN (SELECT value FROM json_each(?))'
        params = [*params, json.dumps(list(keys))]
    row = conn.execute(f"SELECT count(*) FROM {table.name} WHERE {where}", params).fetchone()
    return int(row[0])


def sweep(
    conn: sqlite3.Connection, table: MirrorTable, scope: Sequence[str], generation: int
) -> int:
    """Delete the rows of this scope that the full sync of `generation` did not see.

    Rows of a newer generation belong to an overlapping, later full sync and are kept.
    """
    cursor = conn.execute(
        f"DELETE FROM {table.name} WHERE {table.scope_where()} AND sync_generation < ?",
        [*scope, generation],
    )
    return cursor.rowcount


def load_rows(
    conn: sqlite3.Connection, table: MirrorTable, scope: Sequence[str]
) -> dict[str, tuple]:
    """Every row of a scope as `{key: (key, *data_columns)}`."""
    columns = ", ".join(f'"{c}"' for c in (table.key_column, *table.data_columns))
    cursor = conn.execute(
        f"SELECT {columns} FROM {table.name} WHERE {table.scope_where()}", list(scope)
    )
    return {row[0]: tuple(row) for row in cursor}


def _stored_rows(
    conn: sqlite3.Connection, table: MirrorTable, scope: Sequence[str], keys: set[str]
) -> dict[str, tuple]:
    if not keys:
        return {}
    columns = ", ".join(f'"{c}"' for c in (table.key_column, *table.data_columns))
    cursor = conn.execute(
        f"SELECT {columns} FROM {table.name} WHERE {table.scope_where()}"
        f' AND "{table.key_column}" IN (SELECT value FROM json_each(?))',
        [*scope, json.dumps(sorted(keys))],
    )
    return {row[0]: tuple(row[1:]) for row in cursor}
