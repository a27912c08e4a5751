"""The store: one SQLite file (WAL, migrations, transactions) with page images on disk beside it.

Everything the user makes lives here, so that a reload, a closed tab or a killed process loses
nothing that was committed. Writes are transactions; images are written to a temporary name
and renamed into place before the rows that point at them are committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.settings import get_settings
from core.types import Line

LINE_STATUSES = ("new", "corrected", "confirmed")

MIGRATIONS: list[str] = [
    # 1: the core records
    """
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        source_kind TEXT NOT NULL,
        page_count INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'processing',
        detector TEXT,
        recognizer TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE pages (
        id INTEGER PRIMARY KEY,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        page_no INTEGER NOT NULL,
        image_path TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        warnings TEXT NOT NULL DEFAULT '[]',
        UNIQUE (document_id, page_no)
    );
    CREATE TABLE lines (
        id INTEGER PRIMARY KEY,
        page_id INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        points TEXT NOT NULL,
        text TEXT NOT NULL DEFAULT '',
        confidence REAL NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'corrected', 'confirmed')),
        column_no INTEGER NOT NULL DEFAULT 0,
        indent INTEGER NOT NULL DEFAULT 0,
        recognizer TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX lines_page ON lines(page_id, position);
    CREATE TABLE edits (
        id INTEGER PRIMARY KEY,
        line_id INTEGER NOT NULL,
        field TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT,
        source TEXT NOT NULL DEFAULT 'user',
        at REAL NOT NULL
    );
    CREATE INDEX edits_line ON edits(line_id);
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('recognizer', 'detector')),
        name TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        engine TEXT,
        base TEXT,
        trained_on TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL DEFAULT '{}',
        active INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued',
        params TEXT NOT NULL DEFAULT '{}',
        progress TEXT NOT NULL DEFAULT '{}',
        history TEXT NOT NULL DEFAULT '[]',
        result TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        pid INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 2: the personal dataset: a snapshot of confirmed lines each fine-tune was trained on
    """
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        line_ids TEXT NOT NULL DEFAULT '[]',
        stats TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    ALTER TABLE lines ADD COLUMN holdout INTEGER NOT NULL DEFAULT 0;
    """,
]


@dataclass
class PageRow:
    id: int
    document_id: int
    page_no: int
    image_path: Path
    width: int
    height: int
    warnings: list[str]


class Store:
    """Thin, explicit access to the SQLite store; one connection per instance."""

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home) if home else get_settings().home
        self.home.mkdir(parents=True, exist_ok=True)
        self.images_dir = self.home / "images"
        self.images_dir.mkdir(exist_ok=True)
        self.db_path = self.home / "inkscribe.db"
        self.conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    # -- plumbing -------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for n, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in [s for s in sql.split(";") if s.strip()]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {n}")

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (nothing half-written)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def query(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    # -- documents and pages --------------------------------------------------------------
    def create_document(self, name: str, sha256: str, source_kind: str, page_count: int, detector: str, recognizer: str) -> int:
        now = time.time()
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO documents (name, sha256, source_kind, page_count, detector, recognizer, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, sha256, source_kind, page_count, detector, recognizer, now, now),
            )
            return int(cur.lastrowid)

    def unfinished_document(self, sha256: str) -> int | None:
        """The latest document made from this file whose reading never finished, if any."""
        rows = self.query("SELECT id FROM documents WHERE sha256 = ? AND status != 'done' ORDER BY id DESC LIMIT 1",
                          (sha256,))
        return int(rows[0]["id"]) if rows else None

    def mark_stale_documents(self, older_than_s: float = 120.0) -> int:
        """Documents left 'processing' by a reader that died (kill, crash) become 'interrupted'."""
        with self.transaction() as c:
            cur = c.execute("UPDATE documents SET status = 'interrupted' WHERE status = 'processing' AND updated_at < ?",
                            (time.time() - older_than_s,))
            return cur.rowcount

    def set_document_status(self, doc_id: int, status: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE documents SET status = ?, updated_at = ? WHERE id = ?", (status, time.time(), doc_id))

    def documents(self) -> list[sqlite3.Row]:
        return self.query(
            "SELECT d.*, (SELECT COUNT(*) FROM pages p WHERE p.document_id = d.id) AS pages_done,"
            " (SELECT COUNT(*) FROM lines l JOIN pages p ON l.page_id = p.id WHERE p.document_id = d.id) AS line_count,"
            " (SELECT COUNT(*) FROM lines l JOIN pages p ON l.page_id = p.id WHERE p.document_id = d.id"
            "   AND l.status = 'confirmed') AS confirmed_count"
            " FROM documents d ORDER BY d.id"
        )

    def document(self, doc_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM documents WHERE id = ?", (doc_id,))
        return rows[0] if rows else None

    def delete_document(self, doc_id: int) -> None:
        """The document, its pages, lines and their edit history; page images after the commit."""
        paths = [p.image_path for p in self.pages(doc_id)]
        with self.transaction() as c:
            c.execute("DELETE FROM edits WHERE line_id IN (SELECT l.id FROM lines l JOIN pages p ON l.page_id = p.id"
                      " WHERE p.document_id = ?)", (doc_id,))
            c.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        for p in paths:
            p.unlink(missing_ok=True)

    def add_page(self, doc_id: int, page_no: int, image: Image.Image, lines: Sequence[Line],
                 recognizer: str, warnings: Sequence[str] = ()) -> int:
        """Store a page image and its lines as one complete record."""
        folder = self.images_dir / str(doc_id)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"page-{page_no:04d}.png"
        tmp = folder / f".page-{page_no:04d}.{os.getpid()}.tmp.png"
        image.save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, final)
        now = time.time()
        try:
            with self.transaction() as c:
                cur = c.execute(
                    "INSERT INTO pages (document_id, page_no, image_path, width, height, warnings) VALUES (?, ?, ?, ?, ?, ?)",
                    (doc_id, page_no, str(final.relative_to(self.home)), image.width, image.height,
                     json.dumps(list(warnings))),
                )
                page_id = int(cur.lastrowid)
                c.executemany(
                    "INSERT INTO lines (page_id, position, points, text, confidence, column_no, indent, recognizer, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(page_id, i, json.dumps([[round(x, 1), round(y, 1)] for x, y in ln.points]), ln.text,
                      float(ln.confidence), ln.column, ln.indent, recognizer, now) for i, ln in enumerate(lines)],
                )
                c.execute("UPDATE documents SET updated_at = ? WHERE id = ?", (now, doc_id))
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return page_id

    def _page_row(self, r: sqlite3.Row) -> PageRow:
        return PageRow(r["id"], r["document_id"], r["page_no"], self.home / r["image_path"], r["width"], r["height"],
                       json.loads(r["warnings"]))

    def pages(self, doc_id: int) -> list[PageRow]:
        return [self._page_row(r) for r in self.query("SELECT * FROM pages WHERE document_id = ? ORDER BY page_no", (doc_id,))]

    def page(self, page_id: int) -> PageRow | None:
        rows = self.query("SELECT * FROM pages WHERE id = ?", (page_id,))
        return self._page_row(rows[0]) if rows else None

    # -- lines ----------------------------------------------------------------------------
    def lines(self, page_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM lines WHERE page_id = ? ORDER BY position", (page_id,))

    def document_lines(self, doc_id: int) -> list[sqlite3.Row]:
        return self.query(
            "SELECT l.*, p.page_no FROM lines l JOIN pages p ON l.page_id = p.id WHERE p.document_id = ?"
            " ORDER BY p.page_no, l.position",
            (doc_id,),
        )

    def line(self, line_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM lines WHERE id = ?", (line_id,))
        return rows[0] if rows else None

    def update_line(self, line_id: int, *, text: str | None = None, status: str | None = None,
                    points: Sequence[Sequence[float]] | None = None, confidence: float | None = None,
                    recognizer: str | None = None, source: str = "user", expected_text: str | None = None) -> bool:
        """Change a line and record every changed field in `edits`, in one transaction.

        `expected_text` guards against two tabs editing the same line: when the stored text is
        no longer what this editor saw, nothing is written and False is returned.
        """
        if status is not None and status not in LINE_STATUSES:
            raise ValueError(f"unknown line status {status!r}")
        now = time.time()
        with self.transaction() as c:
            row = c.execute("SELECT * FROM lines WHERE id = ?", (line_id,)).fetchone()
            if row is None:
                return False
            if expected_text is not None and row["text"] != expected_text:
                return False
            changes = {}
            if text is not None and text != row["text"]:
                changes["text"] = text
            if status is not None and status != row["status"]:
                changes["status"] = status
            if points is not None:
                new_points = json.dumps([[round(float(x), 1), round(float(y), 1)] for x, y in points])
                if new_points != row["points"]:
                    changes["points"] = new_points
            if confidence is not None:
                changes["confidence"] = float(confidence)
            if recognizer is not None:
                changes["recognizer"] = recognizer
            if not changes:
                return True
            for field, value in changes.items():
                if field in ("text", "status", "points"):
                    c.execute(
                        "INSERT INTO edits (line_id, field, old_value, new_value, source, at) VALUES (?, ?, ?, ?, ?, ?)",
                        (line_id, field, str(row[field]), str(value), source, now),
                    )
            sets = ", ".join(f"{k} = ?" for k in changes)
            c.execute(f"UPDATE lines SET {sets}, updated_at = ? WHERE id = ?", (*changes.values(), now, line_id))
        return True

    def add_line(self, page_id: int, points: Sequence[Sequence[float]], text: str = "", position: int | None = None,
                 status: str = "new") -> int:
        now = time.time()
        with self.transaction() as c:
            if position is None:
                position = c.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM lines WHERE page_id = ?", (page_id,)).fetchone()[0]
            else:
                c.execute("UPDATE lines SET position = position + 1 WHERE page_id = ? AND position >= ?", (page_id, position))
            cur = c.execute(
                "INSERT INTO lines (page_id, position, points, text, status, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (page_id, position, json.dumps([[float(x), float(y)] for x, y in points]), text, status, now),
            )
            line_id = int(cur.lastrowid)
            c.execute("INSERT INTO edits (line_id, field, old_value, new_value, source, at) VALUES (?, 'created', NULL, ?, 'user', ?)",
                      (line_id, text, now))
            return line_id

    def delete_line(self, line_id: int) -> None:
        now = time.time()
        with self.transaction() as c:
            row = c.execute("SELECT * FROM lines WHERE id = ?", (line_id,)).fetchone()
            if row is None:
                return
            c.execute("INSERT INTO edits (line_id, field, old_value, new_value, source, at) VALUES (?, 'deleted', ?, NULL, 'user', ?)",
                      (line_id, json.dumps(dict(row)), now))
            c.execute("DELETE FROM lines WHERE id = ?", (line_id,))

    def replace_page_lines(self, page_id: int, lines: Sequence[Line], recognizer: str, keep_confirmed: bool = True) -> None:
        """Swap in a new reading of a page; lines the user confirmed or corrected are kept as they are."""
        now = time.time()
        with self.transaction() as c:
            kept = c.execute("SELECT id FROM lines WHERE page_id = ? AND status != 'new'", (page_id,)).fetchall() if keep_confirmed else []
            c.execute("DELETE FROM lines WHERE page_id = ?" + (" AND status = 'new'" if keep_confirmed else ""), (page_id,))
            base = len(kept)
            c.executemany(
                "INSERT INTO lines (page_id, position, points, text, confidence, column_no, indent, recognizer, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(page_id, base + i, json.dumps([[round(x, 1), round(y, 1)] for x, y in ln.points]), ln.text,
                  float(ln.confidence), ln.column, ln.indent, recognizer, now) for i, ln in enumerate(lines)],
            )

    def edits(self, line_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM edits WHERE line_id = ? ORDER BY id", (line_id,))

    def confirmed_lines(self, doc_id: int | None = None) -> list[sqlite3.Row]:
        """Every confirmed line with its page image, the personal dataset."""
        sql = (
            "SELECT l.*, p.image_path, p.page_no, p.document_id, d.name AS document_name FROM lines l"
            " JOIN pages p ON l.page_id = p.id JOIN documents d ON p.document_id = d.id WHERE l.status = 'confirmed'"
        )
        params: tuple = ()
        if doc_id is not None:
            sql += " AND p.document_id = ?"
            params = (doc_id,)
        return self.query(sql + " ORDER BY p.document_id, p.page_no, l.position", params)

    # -- models ---------------------------------------------------------------------------
    def register_model(self, kind: str, name: str, path: str | Path, engine: str | None = None, base: str | None = None,
                       trained_on: dict | None = None, metrics: dict | None = None, activate: bool = False) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO models (kind, name, path, engine, base, trained_on, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, name, str(path), engine, base, json.dumps(trained_on or {}), json.dumps(metrics or {}), time.time()),
            )
            model_id = int(cur.lastrowid)
            if activate:
                c.execute("UPDATE models SET active = (id = ?) WHERE kind = ?", (model_id, kind))
            return model_id

    def models(self, kind: str | None = None) -> list[sqlite3.Row]:
        if kind:
            return self.query("SELECT * FROM models WHERE kind = ? ORDER BY id", (kind,))
        return self.query("SELECT * FROM models ORDER BY id")

    def model(self, model_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM models WHERE id = ?", (model_id,))
        return rows[0] if rows else None

    def activate_model(self, kind: str, model_id: int | None) -> None:
        """Make one model the active one of its kind; None goes back to the shipped default."""
        with self.transaction() as c:
            c.execute("UPDATE models SET active = (id = ?) WHERE kind = ?", (model_id if model_id is not None else -1, kind))

    def active_model(self, kind: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM models WHERE kind = ? AND active = 1", (kind,))
        return rows[0] if rows else None

    def active_spec(self, kind: str) -> str:
        """What to load for this kind: the active model's path, else 'default'."""
        row = self.active_model(kind)
        return row["path"] if row is not None and Path(row["path"]).exists() else "default"

    def rename_model(self, model_id: int, name: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE models SET name = ? WHERE id = ?", (name, model_id))

    def update_model_metrics(self, model_id: int, metrics: dict) -> None:
        with self.transaction() as c:
            row = c.execute("SELECT metrics FROM models WHERE id = ?", (model_id,)).fetchone()
            merged = {**json.loads(row["metrics"] if row else "{}"), **metrics}
            c.execute("UPDATE models SET metrics = ? WHERE id = ?", (json.dumps(merged), model_id))

    def delete_model(self, model_id: int) -> Path | None:
        """Forget a model (its files are removed by the caller once this committed)."""
        with self.transaction() as c:
            row = c.execute("SELECT path FROM models WHERE id = ?", (model_id,)).fetchone()
            c.execute("DELETE FROM models WHERE id = ?", (model_id,))
        return Path(row["path"]) if row else None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def page_results(store: Store, doc_id: int) -> list:
    """A stored document as ordered PageResults, what every exporter takes."""
    from core.types import PageResult

    doc = store.document(doc_id)
    if doc is None:
        return []
    out = []
    for page in store.pages(doc_id):
        lines = [
            Line(points=[tuple(p) for p in json.loads(r["points"])], text=r["text"], confidence=r["confidence"],
                 column=r["column_no"], indent=r["indent"])
            for r in store.lines(page.id)
        ]
        out.append(PageResult(doc["name"], page.page_no, page.width, page.height, lines, page.warnings))
    return out
