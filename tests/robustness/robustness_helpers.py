"""Makers of bad (and awkward but valid) inputs, and store snapshots, for the robustness tests.

PDFs are written by hand here (no PDF library needed), including the standard RC4 security
handler, so encrypted and password-protected files need no extra dependency.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# -- page images ------------------------------------------------------------------------------


def page_image(width: int = 900, height: int = 1200, lines: int = 6, mode: str = "RGB") -> Image.Image:
    """A white page with dark handwriting-like strokes in rows: the classical detector finds them."""
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    for r in range(lines):
        y = 80 + r * max(40, (height - 160) // max(1, lines))
        x = 60
        while x < width - 120:
            w = 20 + (x * 7 + r * 13) % 50
            d.rectangle([x, y, x + w, y + 18], fill=(20, 30, 120))
            d.line([x, y + 18, x + w, y + 4], fill=(20, 30, 120), width=3)
            x += w + 14
    return img if mode == "RGB" else img.convert(mode)


def jpeg_bytes(img: Image.Image, quality: int = 70) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# -- PDFs -------------------------------------------------------------------------------------

PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _pad(pw: str) -> bytes:
    return (pw.encode("latin-1") + PAD)[:32]


def make_pdf(pages: list[tuple[float, float]], image: Image.Image | None = None, user_password: str | None = None,
             owner_password: str = "owner", share_content: bool = True) -> bytes:
    """A PDF with the given page sizes (pt); each page shows `image` (JPEG) or drawn strokes.

    `user_password` not None → encrypted with the standard RC4 40-bit handler ("" = opens
    without a password but is encrypted, owner restrictions only).
    """
    objs: dict[int, bytes] = {}
    streams: dict[int, tuple[bytes, bytes]] = {}  # num → (dict without Length, data)
    n_pages = len(pages)
    img_num = 3
    content_num = 4
    first_page = 5
    kids = " ".join(f"{first_page + i} 0 R" for i in range(n_pages))
    objs[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objs[2] = f"<< /Type /Pages /Count {n_pages} /Kids [{kids}] >>".encode()
    if image is not None:
        data = jpeg_bytes(image)
        streams[img_num] = (
            f"/Type /XObject /Subtype /Image /Width {image.width} /Height {image.height} "
            "/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode".encode(), data)
    else:
        objs[img_num] = b"null"
    for i, (w, h) in enumerate(pages):
        if image is not None:
            content = f"q {w:.2f} 0 0 {h:.2f} 0 0 cm /Im0 Do Q".encode()
        else:
            ops = ["0.1 0.1 0.5 rg"]
            for r in range(6):
                y = h - 60 - r * 40
                ops.append(f"40 {y:.1f} {max(10.0, w - 80):.1f} 10 re f")
            content = " ".join(ops).encode()
        cnum = content_num if share_content else first_page + n_pages + i
        if share_content and i > 0:
            pass
        else:
            streams[cnum] = (b"", content)
        res = b"/Resources << /XObject << /Im0 3 0 R >> >>" if image is not None else b""
        objs[first_page + i] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w:g} {h:g}] /Contents {cnum} 0 R ".encode() + res + b" >>")
    if content_num not in streams:
        objs[content_num] = b"null"
    file_id = hashlib.md5(repr(pages).encode()).digest()
    key = None
    encrypt_num = None
    if user_password is not None:
        perms = -3904  # print etc. allowed, modify/copy denied
        o = _rc4(hashlib.md5(_pad(owner_password)).digest()[:5], _pad(user_password))
        key = hashlib.md5(_pad(user_password) + o + struct.pack("<i", perms) + file_id).digest()[:5]
        u = _rc4(key, PAD)
        encrypt_num = max([*objs, *streams]) + 1
        objs[encrypt_num] = (f"<< /Filter /Standard /V 1 /R 2 /O <{o.hex()}> /U <{u.hex()}> /P {perms} >>").encode()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted({*objs, *streams}):
        offsets[num] = len(out)
        if num in streams:
            head, data = streams[num]
            if key is not None:
                data = _rc4(hashlib.md5(key + num.to_bytes(3, "little") + b"\x00\x00").digest()[:10], data)
            out += f"{num} 0 obj\n<< ".encode() + head + f" /Length {len(data)} >>\nstream\n".encode()
            out += data + b"\nendstream\nendobj\n"
        else:
            out += f"{num} 0 obj\n".encode() + objs[num] + b"\nendobj\n"
    size = max(offsets) + 1
    xref = len(out)
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    for num in range(1, size):
        out += (f"{offsets[num]:010d} 00000 n \n" if num in offsets else "0000000000 65535 f \n").encode()
    enc = f" /Encrypt {encrypt_num} 0 R" if encrypt_num else ""
    out += (f"trailer\n<< /Size {size} /Root 1 0 R{enc} /ID [<{file_id.hex()}> <{file_id.hex()}>] >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def pillow_pdf(path: Path, image: Image.Image, pages: int, resolution: float = 200.0) -> Path:
    """A multi-page PDF of one page image, written one page at a time (Pillow's PDF writer)."""
    rgb = image.convert("RGB")
    rgb.save(path, format="PDF", resolution=resolution, save_all=True,
             append_images=(rgb for _ in range(pages - 1)))
    return path


# -- running the CLI --------------------------------------------------------------------------

FAKE_ENGINES = """
import sys
from core.pipeline import Engines
from core.recognize import BaseRecognizer, Recognition
from core.detect.classical import ClassicalDetector


class FakeRecognizer(BaseRecognizer):
    name = "fake"

    def _predict(self, crops):
        return [Recognition(f"w{c.width}", 0.5) for c in crops]


def _load(cls, detector="default", recognizer="default"):
    return cls(ClassicalDetector(), FakeRecognizer(), "classical", "fake")


Engines.load = classmethod(_load)
from core.cli import main

sys.exit(main(sys.argv[1:]))
"""


def cli_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({"INKSCRIBE_HOME": str(home), "OMP_NUM_THREADS": "1", "INKSCRIBE_THREADS": "1",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    env.update(extra)
    return env


def run_cli(args: list[str], home: Path, fake: bool = False, timeout: float = 180, cwd: Path | None = None,
            **env: str) -> subprocess.CompletedProcess:
    """`python -m core ARGS` (or the same main with classical + fake engines) in a subprocess."""
    cmd = [PYTHON, "-c", FAKE_ENGINES, *args] if fake else [PYTHON, "-m", "core", *args]
    return subprocess.run(cmd, cwd=cwd or REPO, env=cli_env(home, **env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, exactly one line on stderr starting 'error:', no traceback, nothing on stdout."""
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    assert proc.stdout == "", proc.stdout
    return lines[0]


# -- store snapshots ------------------------------------------------------------------------


def seed_store(home: Path, pages: int = 1, lines_per_page: int = 5) -> int:
    """One complete document written through the Store API (no engines needed)."""
    from core.store import Store
    from core.types import Line

    store = Store(home)
    try:
        doc = store.create_document("seed.pdf", "0" * 64, "pdf", pages, "classical", "fake")
        for n in range(1, pages + 1):
            lines = [Line(points=[(10, 10 + 30 * i), (200, 10 + 30 * i), (200, 35 + 30 * i), (10, 35 + 30 * i)],
                          text=f"seed line {i}", confidence=0.9) for i in range(lines_per_page)]
            store.add_page(doc, n, page_image(300, 400, lines=2), lines, "fake")
        store.set_document_status(doc, "done")
        return doc
    finally:
        store.close()


def snapshot(home: Path) -> dict:
    """Everything a user could lose: every table's rows and every file under images/."""
    snap: dict = {"files": {}, "tables": {}}
    images = home / "images"
    if images.is_dir():
        for f in sorted(images.rglob("*")):
            if f.is_file():
                snap["files"][str(f.relative_to(home))] = hashlib.sha256(f.read_bytes()).hexdigest()
    db = home / "inkscribe.db"
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
                snap["tables"][name] = con.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()
        finally:
            con.close()
    return snap


def integrity(home: Path) -> str:
    con = sqlite3.connect(home / "inkscribe.db")
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def orphans(home: Path) -> dict:
    """Rows pointing at nothing and page images without a row (or rows without an image)."""
    con = sqlite3.connect(home / "inkscribe.db")
    try:
        out = {
            "pages_without_document": con.execute(
                "SELECT COUNT(*) FROM pages WHERE document_id NOT IN (SELECT id FROM documents)").fetchone()[0],
            "lines_without_page": con.execute(
                "SELECT COUNT(*) FROM lines WHERE page_id NOT IN (SELECT id FROM pages)").fetchone()[0],
            "fk_violations": len(con.execute("PRAGMA foreign_key_check").fetchall()),
        }
        rows = {r[0] for r in con.execute("SELECT image_path FROM pages")}
    finally:
        con.close()
    files = {str(f.relative_to(home)) for f in (home / "images").rglob("*.png")} if (home / "images").is_dir() else set()
    out["rows_without_image"] = len(rows - files)
    out["images_without_row"] = len({f for f in files if not Path(f).name.startswith(".")} - rows)
    return out
