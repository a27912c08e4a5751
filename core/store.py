"""The store: one SQLite file (WAL, migrations, transactions) with page images on disk beside it.

Everything the user makes lives here, so that a reload, a closed tab or a killed process loses
nothing that was committed. Writes are transactions; images are written to a temporary name
and renamed into place before the rows that point at them are committed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
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
    # 3: who is reading a document ('cli' or 'job:ID', and its pid), so a run resumes only its own work
    """
    ALTER TABLE documents ADD COLUMN owner TEXT;
    ALTER TABLE documents ADD COLUMN owner_pid INTEGER;
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
        self._savepoints = itertools.count()
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
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (nothing half-written).

        Inside a transaction already open on this connection it is a SAVEPOINT, so store methods
        compose: a caller wraps several of them in one `with store.transaction():` to make them atomic.
        """
        if self.conn.in_transaction:
            name = f"sp{next(self._savepoints)}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            self.conn.execute(f"RELEASE {name}")
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def query(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    # -- documents and pages --------------------------------------------------------------
    def create_document(self, name: str, sha256: str, source_kind: str, page_count: int, detector: str, recognizer: str,
                        owner: str | None = None, status: str = "processing") -> int:
        """A new document being read by `owner` ('cli', 'job:ID') in this process (or complete: status 'done')."""
        now = time.time()
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO documents (name, sha256, source_kind, page_count, status, detector, recognizer, created_at,"
                " updated_at, owner, owner_pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, sha256, source_kind, page_count, status, detector, recognizer, now, now, owner, os.getpid()),
            )
            return int(cur.lastrowid)

    def unfinished_document(self, sha256: str, owner: str | None) -> sqlite3.Row | None:
        """The latest document of `owner` made from this file whose reading never finished (id, status, owner_pid)."""
        rows = self.query("SELECT id, status, owner_pid FROM documents WHERE sha256 = ? AND status != 'done'"
                          " AND owner IS ? ORDER BY id DESC LIMIT 1", (sha256, owner))
        return rows[0] if rows else None

    def claim_document(self, doc_id: int) -> None:
        """This process carries on reading the document."""
        with self.transaction() as c:
            c.execute("UPDATE documents SET status = 'processing', owner_pid = ?, updated_at = ? WHERE id = ?",
                      (os.getpid(), time.time(), doc_id))

    def mark_stale_documents(self, reader_alive: Callable[[int], bool], older_than_s: float = 120.0) -> int:
        """Documents left 'processing' by a reader that died (kill, crash) become 'interrupted'.

        A document whose reader's pid is recorded is stale once `reader_alive(pid)` says no; one
        from before pids were recorded, once it has not changed for `older_than_s`.
        """
        rows = self.query("SELECT id, owner_pid, updated_at FROM documents WHERE status = 'processing'")
        now = time.time()
        stale = [r["id"] for r in rows if (not reader_alive(r["owner_pid"]) if r["owner_pid"]
                                            else r["updated_at"] < now - older_than_s)]
        with self.transaction() as c:
            c.executemany("UPDATE documents SET status = 'interrupted' WHERE id = ? AND status = 'processing'",
                          [(i,) for i in stale])
        return len(stale)

    def set_document_status(self, doc_id: int, status: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE documents SET status = ?, updated_at = ? WHERE id = ?", (status, time.time(), doc_id))

    def set_document_recognizer(self, doc_id: int, spec: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE documents SET recognizer = ?, updated_at = ? WHERE id = ?", (spec, time.time(), doc_id))

    def document_hashes(self, status: str | None = None) -> set[str]:
        """The content hashes of the stored documents (those with `status`, if given)."""
        if status is None:
            return {r["sha256"] for r in self.query("SELECT sha256 FROM documents")}
        return {r["sha256"] for r in self.query("SELECT sha256 FROM documents WHERE status = ?", (status,))}

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

    def page_image_path(self, doc_id: int, page_no: int) -> Path:
        return self.images_dir / str(doc_id) / f"page-{page_no:04d}.png"

    def add_page(self, doc_id: int, page_no: int, image: Image.Image, lines: Sequence[Line],
                 recognizer: str, warnings: Sequence[str] = (), line_status: str = "new") -> int:
        """Store a page image and its lines as one complete record (imported lines arrive 'confirmed')."""
        final = self.page_image_path(doc_id, page_no)
        folder = final.parent
        folder.mkdir(parents=True, exist_ok=True)
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
                    "INSERT INTO lines (page_id, position, points, text, confidence, column_no, indent, recognizer,"
                    " status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(page_id, i, json.dumps([[round(x, 1), round(y, 1)] for x, y in ln.points]), ln.text,
                      float(ln.confidence), ln.column, ln.indent, recognizer, line_status, now)
                     for i, ln in enumerate(lines)],
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

    def set_line_layout(self, layout: Sequence[tuple[int, int, int, int]]) -> None:
        """(line id, position, column, indent) for lines put back in reading order, in one transaction."""
        with self.transaction() as c:
            c.executemany("UPDATE lines SET position = ?, column_no = ?, indent = ? WHERE id = ?",
                          [(pos, col, indent, line_id) for line_id, pos, col, indent in layout])

    def least_confident_lines(self, limit: int | None, doc_id: int | None = None) -> list[sqlite3.Row]:
        """Unconfirmed lines anywhere (or in one document), least confident first, with page and document
        (`limit` None: all of them)."""
        sql = ("SELECT l.*, p.page_no, p.document_id, d.name AS document_name FROM lines l JOIN pages p"
               " ON l.page_id = p.id JOIN documents d ON p.document_id = d.id WHERE l.status != 'confirmed'")
        params: tuple = ()
        if doc_id is not None:
            sql += " AND p.document_id = ?"
            params = (doc_id,)
        return self.query(sql + " ORDER BY l.confidence ASC, d.id, p.page_no, l.position LIMIT ?",
                          (*params, -1 if limit is None else limit))

    def page_confirmation(self) -> list[sqlite3.Row]:
        """Per page: its id, page number, document hash, confirmed lines and whether it is held out."""
        return self.query(
            "SELECT p.id AS page_id, p.page_no, d.sha256, SUM(l.status = 'confirmed') AS confirmed, MAX(l.holdout) AS held"
            " FROM pages p JOIN documents d ON p.document_id = d.id JOIN lines l ON l.page_id = p.id GROUP BY p.id")

    def hold_out_pages(self, page_ids: Sequence[int]) -> None:
        """Every line of these pages (those confirmed later too) is kept out of training."""
        with self.transaction() as c:
            c.executemany("UPDATE lines SET holdout = 1 WHERE page_id = ? AND holdout = 0", [(i,) for i in page_ids])

    def line_overview(self) -> list[sqlite3.Row]:
        """Every line's document, status, hold-out flag and text (what the dataset's statistics count)."""
        return self.query("SELECT d.id, d.name, l.status, l.holdout, l.text FROM lines l JOIN pages p ON l.page_id = p.id"
                          " JOIN documents d ON p.document_id = d.id ORDER BY d.id")

    def add_dataset(self, name: str, line_ids: Sequence[int]) -> int:
        """Remember exactly which lines a fine-tune saw."""
        with self.transaction() as c:
            cur = c.execute("INSERT INTO datasets (name, line_ids, stats, created_at) VALUES (?, ?, ?, ?)",
                            (name, json.dumps(list(line_ids)), json.dumps({"lines": len(line_ids)}), time.time()))
            return int(cur.lastrowid)

    def complete_page_ids(self) -> set[int]:
        """Pages whose every line is confirmed: what a line detector may learn from."""
        rows = self.query("SELECT page_id FROM lines GROUP BY page_id HAVING SUM(status != 'confirmed') = 0")
        return {r["page_id"] for r in rows}

    def edits(self, line_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM edits WHERE line_id = ? ORDER BY id", (line_id,))

    def unconfirmed_lines(self) -> list[sqlite3.Row]:
        """Unconfirmed lines of pages not held out, with page image and document (self-training's unlabelled pool).

        A page counts as held out when any of its lines is: its unchecked lines must not be learned from either.
        """
        return self.query(
            "SELECT l.id, l.page_id, l.points, p.image_path, d.name AS document_name FROM lines l"
            " JOIN pages p ON l.page_id = p.id JOIN documents d ON p.document_id = d.id"
            " WHERE l.status != 'confirmed' AND l.page_id NOT IN (SELECT page_id FROM lines WHERE holdout = 1)"
            " ORDER BY p.document_id, p.page_no, l.position")

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
