from core.geometry import box_points
from core.layout import order_lines, rows
from core.types import Line


def line(x0, y0, x1, y1, text=""):
    return Line(points=box_points(x0, y0, x1, y1), text=text)


def texts(lines):
    return [ln.text for ln in lines]


def test_top_to_bottom_whatever_the_detection_order():
    lines = [line(10, 200, 300, 230, "c"), line(10, 10, 300, 40, "a"), line(10, 100, 300, 130, "b")]
    assert texts(order_lines(lines)) == ["a", "b", "c"]


def test_margin_notes_kept_apart_from_the_main_column():
    main = [line(10, y, 400, y + 30, f"main{i}") for i, y in enumerate(range(0, 400, 50))]
    margin = [line(600, 60, 750, 90, "note1"), line(600, 110, 750, 140, "note2")]
    ordered = order_lines(margin + main)
    assert texts(ordered) == [f"main{i}" for i in range(8)] + ["note1", "note2"]
    assert {ln.column for ln in ordered[:8]} == {0} and {ln.column for ln in ordered[8:]} == {1}


def test_fragments_on_one_row_read_left_to_right_and_group_as_a_row():
    lines = [line(300, 10, 350, 40, "2"), line(10, 10, 60, 40, "0"), line(150, 12, 200, 42, "1")]
    ordered = order_lines(lines)
    assert texts(ordered) == ["0", "1", "2"]
    assert [texts(r) for r in rows(ordered)] == [["0", "1", "2"]]


def test_indentation_levels():
    ordered = order_lines([line(10, 0, 300, 30, "top"), line(100, 40, 300, 70, "sub"), line(10, 80, 300, 110, "back")])
    assert [ln.indent for ln in ordered] == [0, 1, 0]


def test_empty_page():
    assert order_lines([]) == []
