"""The jobs table: its SQL, and nothing else (the rules of when a job may start live in core.jobs).

Every method runs in its own transaction, or inside the caller's (`with store.transaction():`
around several calls makes them one atomic step: the busy check and the insert of a new job).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from core.store import Store

ACTIVE = ("queued", "running")


class JobStore:
    def __init__(self, store: Store):
        self.store = store

    def _one(self, sql: str, params: Sequence = ()) -> sqlite3.Row | None:
        rows = self.store.query(sql, params)
        return rows[0] if rows else None

    def get(self, job_id: int) -> sqlite3.Row | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def recent_ids(self, limit: int) -> list[int]:
        return [r["id"] for r in self.store.query("SELECT id FROM jobs ORDER BY id DESC LIMIT ?", (limit,))]

    def active(self) -> list[sqlite3.Row]:
        """Queued and running jobs, oldest first."""
        return self.store.query("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY id")

    def latest_id(self, kinds: Sequence[str] | None = None, status: str | None = None) -> int | None:
        where, params = [], []
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        if status:
            where.append("status = ?")
            params.append(status)
        sql = "SELECT id FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC LIMIT 1"
        row = self._one(sql, params)
        return int(row["id"]) if row else None

    def insert(self, kind: str, params: dict) -> int:
        now = time.time()
        with self.store.transaction() as c:
            cur = c.execute("INSERT INTO jobs (kind, status, params, created_at, updated_at) VALUES (?, 'queued', ?, ?, ?)",
                            (kind, json.dumps(params), now, now))
            return int(cur.lastrowid)

    def _update(self, job_id: int, sets: str, params: Sequence = (), only_if_status: str | None = None) -> int:
        """Update one job's row (optionally only while it has a given status); returns rows changed."""
        guard = " AND status = ?" if only_if_status else ""
        with self.store.transaction() as c:
            cur = c.execute(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?{guard}",
                            (*params, time.time(), job_id, *([only_if_status] if only_if_status else [])))
            return cur.rowcount

    def set_pid_if_unset(self, job_id: int, pid: int) -> None:
        """The spawner's pid, unless the worker already claimed the row with its own."""
        self._update(job_id, "pid = COALESCE(pid, ?)", (pid,))

    def claim(self, job_id: int, pid: int) -> None:
        self._update(job_id, "status = 'running', pid = ?", (pid,))

    def request_cancel(self, job_id: int) -> None:
        self._update(job_id, "cancel_requested = 1")

    def cancel_requested(self, job_id: int) -> bool:
        row = self._one("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(row and row["cancel_requested"])

    def requeue(self, job_id: int) -> None:
        self._update(job_id, "status = 'queued', error = NULL, pid = NULL, cancel_requested = 0, created_at = ?",
                     (time.time(),))

    def mark_interrupted(self, job_id: int, was: str, reason: str) -> bool:
        """'interrupted' with a reason, if the job is still in status `was` (no race with its worker)."""
        return self._update(job_id, "status = 'interrupted', error = ?", (reason,), only_if_status=was) > 0

    def finish(self, job_id: int, status: str, error: str | None = None, result: dict | None = None) -> None:
        if result is None:
            self._update(job_id, "status = ?, error = ?", (status, error))
        else:
            self._update(job_id, "status = ?, error = ?, result = ?", (status, error, json.dumps(result)))

    def write_progress(self, job_id: int, progress: dict, history: list) -> None:
        self._update(job_id, "progress = ?, history = ?", (json.dumps(progress, default=str), json.dumps(history)))
