import json
import sqlite3

from PIL import Image

from core.store import MIGRATIONS, Store, page_results
from core.types import Line


def make_doc(store, n_lines=3):
    doc = store.create_document("x.pdf", "sha", "pdf", 1, "classical", "default")
    lines = [Line([(0, i * 10), (50, i * 10), (50, i * 10 + 8), (0, i * 10 + 8)], f"t{i}", 0.5 + i / 10) for i in range(n_lines)]
    page_id = store.add_page(doc, 1, Image.new("RGB", (60, 40), "white"), lines, "default")
    return doc, page_id


def test_migrations_wal_and_reopen(inkscribe_home):
    store = Store()
    assert store.schema_version == len(MIGRATIONS)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    make_doc(store)
    store.close()
    again = Store()
    assert again.schema_version == len(MIGRATIONS) and len(again.documents()) == 1


def test_old_schema_is_migrated(inkscribe_home):
    inkscribe_home.mkdir(parents=True)
    conn = sqlite3.connect(inkscribe_home / "inkscribe.db")
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.close()
    store = Store()
    assert store.schema_version == len(MIGRATIONS)
    assert "holdout" in [r[1] for r in store.conn.execute("PRAGMA table_info(lines)")]


def test_edits_are_recorded_with_history():
    store = Store()
    _, page_id = make_doc(store)
    line = store.lines(page_id)[0]
    assert store.update_line(line["id"], text="fixed", status="corrected")
    assert store.update_line(line["id"], status="confirmed")
    fields = [(e["field"], e["old_value"], e["new_value"]) for e in store.edits(line["id"])]
    assert fields == [("text", "t0", "fixed"), ("status", "new", "corrected"), ("status", "corrected", "confirmed")]
    assert [r["text"] for r in store.confirmed_lines()] == ["fixed"]


def test_stale_editor_is_refused():
    store = Store()
    _, page_id = make_doc(store)
    line = store.lines(page_id)[0]
    assert store.update_line(line["id"], text="tab one", expected_text="t0")
    assert not store.update_line(line["id"], text="tab two", expected_text="t0")
    assert store.line(line["id"])["text"] == "tab one"


def test_failed_transaction_leaves_nothing(inkscribe_home):
    store = Store()
    doc, _ = make_doc(store)
    bad = [Line([(0, 0), (1, 0), (1, 1)], "x")]
    bad[0].confidence = "not a number"  # the INSERT fails half-way through the page
    try:
        store.add_page(doc, 2, Image.new("RGB", (10, 10)), bad, "default")
    except (ValueError, TypeError):
        pass
    assert [p.page_no for p in store.pages(doc)] == [1]
    assert not (inkscribe_home / "images" / str(doc) / "page-0002.png").exists()


def test_replace_page_lines_keeps_user_work():
    store = Store()
    _, page_id = make_doc(store)
    keep = store.lines(page_id)[1]
    store.update_line(keep["id"], text="mine", status="confirmed")
    store.replace_page_lines(page_id, [Line([(0, 0), (9, 0), (9, 9), (0, 9)], "new reading", 0.9)], "other")
    texts = sorted(r["text"] for r in store.lines(page_id))
    assert texts == ["mine", "new reading"]


def test_models_activate_and_roll_back():
    store = Store()
    a = store.register_model("recognizer", "a", "/tmp/a", activate=True)
    b = store.register_model("recognizer", "b", "/tmp/b", activate=True)
    assert store.active_model("recognizer")["id"] == b
    store.activate_model("recognizer", a)
    assert store.active_model("recognizer")["id"] == a
    store.activate_model("recognizer", None)
    assert store.active_model("recognizer") is None
    assert store.active_spec("recognizer") == "default"


def test_page_results_round_trip():
    store = Store()
    doc, _ = make_doc(store)
    pages = page_results(store, doc)
    assert [ln.text for ln in pages[0].lines] == ["t0", "t1", "t2"]
    assert json.loads(json.dumps(pages[0].to_json()))["lines"][0]["text"] == "t0"


def test_store_methods_compose_inside_one_callers_transaction(inkscribe_home):
    """A store method inside `with store.transaction():` is a savepoint: all commit, or none."""
    import pytest

    from core.store import Store

    store = Store(inkscribe_home)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.create_document("a.pdf", "sha-a", "pdf", 1, "d", "r")
            raise RuntimeError("the caller fails after the method committed its savepoint")
    assert store.documents() == []
    with store.transaction():
        doc_id = store.create_document("b.pdf", "sha-b", "pdf", 1, "d", "r")
        with pytest.raises(ValueError):
            with store.transaction():
                store.set_document_recognizer(doc_id, "x")
                raise ValueError("inner step fails")
        store.set_document_status(doc_id, "done")
    (doc,) = store.documents()
    assert (doc["name"], doc["status"], doc["recognizer"]) == ("b.pdf", "done", "r")
