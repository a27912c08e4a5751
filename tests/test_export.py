import json

from core.export import escape_md, to_json, to_markdown, to_page_xml, to_text
from core.geometry import box_points
from core.layout import order_lines
from core.types import Line, PageResult


def page(lines, source="notes.pdf", n=1):
    return PageResult(source, n, 1000, 1400, order_lines(lines))


def ln(x0, y0, x1, y1, text):
    return Line(points=box_points(x0, y0, x1, y1), text=text, confidence=0.9)


def test_markdown_has_heading_page_markers_bullets_and_nesting():
    p1 = page([ln(10, 0, 400, 30, "• first point"), ln(80, 40, 400, 70, "- nested point"), ln(10, 80, 400, 110, "plain")])
    p2 = page([ln(10, 0, 400, 30, "second page")], n=2)
    md = to_markdown([p1, p2])
    assert md.startswith("# notes.pdf\n")
    assert "<!-- page 1 -->" in md and "<!-- page 2 -->" in md
    assert "- first point" in md
    assert "  - nested point" in md
    assert "plain  " in md and "second page" in md


def test_a_leading_dot_or_dash_is_a_bullet_unless_a_number_or_mark_follows():
    texts = [". Decoder: n inputs", ".Note: 3 bits", "-5 V is low", ".5 of them", "... and so on", "-> next", "- item"]
    lines = [ln(10, 40 * i, 400, 40 * i + 30, t) for i, t in enumerate(texts)]
    md = to_markdown([page(lines)]).splitlines()
    assert "- Decoder: n inputs" in md and "- Note: 3 bits" in md and "- item" in md
    assert "-5 V is low  " in md and ".5 of them  " in md and "... and so on  " in md
    assert "-\\> next  " in md


def test_markdown_never_invents_text_and_escapes():
    md = to_markdown([page([ln(10, 0, 400, 30, "# not a heading"), ln(10, 40, 400, 70, "a*b*c")])])
    assert "\\# not a heading" in md and "a\\*b\\*c" in md
    assert "*(no text found on this page)*" in to_markdown([page([])])


def test_margin_notes_become_a_quote_after_the_main_text():
    main = [ln(10, y, 400, y + 30, f"main{i}") for i, y in enumerate(range(0, 300, 50))]
    notes = [ln(700, 50, 900, 80, "aside one"), ln(700, 100, 900, 130, "aside two")]
    md = to_markdown([page(main + notes)])
    assert md.index("main5") < md.index("> aside one")


def test_text_one_line_per_line_pages_separated_by_blank_line():
    txt = to_text([page([ln(0, 0, 100, 20, "a"), ln(0, 40, 100, 60, "b")]), page([ln(0, 0, 100, 20, "c")], n=2)])
    assert txt == "a\nb\n\nc\n"


def test_json_schema():
    data = json.loads(to_json([page([ln(0, 0, 100, 20, "a")])]))
    p = data["pages"][0]
    assert set(p) == {"source", "page", "width", "height", "lines"}
    assert set(p["lines"][0]) == {"points", "text", "confidence"}
    assert p["lines"][0]["points"][0] == [0, 0]


def test_page_xml_is_well_formed():
    import xml.dom.minidom

    xml_text = to_page_xml(page([ln(0, 0, 100, 20, "a < b & c")]))
    doc = xml.dom.minidom.parseString(xml_text.encode())
    assert doc.getElementsByTagName("Unicode")[0].firstChild.data == "a < b & c"


def test_escape_md_numbered_looking_text():
    assert escape_md("1. not a list") == "1\\. not a list"
