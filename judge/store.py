"""SQLite score store: (judge fingerprint, item key) -> Score.

It wraps any judge and runs only what is missing, which makes reruns free and resume
exact. Keys are content hashes with the algorithm named ("sha256:..."). Errors are not
stored, so a rerun retries them; abstentions are. Schema changes are an append-only list
of named migrations."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from judge.records import Score

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_scores",
        """
        CREATE TABLE scores (
            fingerprint TEXT NOT NULL,
            key TEXT NOT NULL,
            value REAL,
            abstained INTEGER NOT NULL DEFAULT 0,
            details TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL,
            PRIMARY KEY (fingerprint, key)
        ) WITHOUT ROWID
        """,
    ),
]


class ScoreStore:
    """A small cache of scores shared by runs (and by ranks of a distributed run)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        self._enable_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _enable_wal(self) -> None:
        """Switch to WAL so ranks and runs can share the store. Switching needs an exclusive
        lock and SQLite does not wait for it (no busy handler), so two processes opening a
        fresh store at once retry here instead of failing with "database is locked"."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {row[0] for row in self._db.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not self._db.execute("SELECT 1 FROM migrations WHERE name=?", (name,)).fetchone():
                    self._db.execute(sql)
                    self._db.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get_many(self, fingerprint: str, keys: Sequence[str]) -> dict[str, Score]:
        """Scores already known for these keys (missing keys are absent from the result)."""
        found: dict[str, Score] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value, abstained, details FROM scores WHERE fingerprint=? AND key IN ({marks})",
                (fingerprint, *chunk),
            )
            for key, value, abstained, details in rows:
                found[key] = Score(value, abstained=bool(abstained), details=json.loads(details))
        return found

    def put_many(self, fingerprint: str, entries: Iterable[tuple[str, Score]]) -> int:
        """Store successful scores and abstentions in one transaction; errors are skipped."""
        now = time.time()
        rows = [
            (fingerprint, key, s.value, int(s.abstained), json.dumps(s.details, ensure_ascii=False), now)
            for key, s in entries
            if s.error is None
        ]
        if rows:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        return len(rows)

    def count(self, fingerprint: str | None = None) -> int:
        if fingerprint is None:
            return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM scores WHERE fingerprint=?", (fingerprint,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
