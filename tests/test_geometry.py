import pytest
from PIL import Image, ImageDraw

from core.geometry import bbox, crop_line, iou, min_area_quad


def test_iou_identical_disjoint_and_half():
    a = [(0, 0), (10, 0), (10, 10), (0, 10)]
    assert iou(a, a) == 1.0
    assert iou(a, [(20, 20), (30, 20), (30, 30), (20, 30)]) == 0.0
    assert iou(a, [(5, 0), (15, 0), (15, 10), (5, 10)]) == pytest.approx(1 / 3)


def test_min_area_quad_orders_corners_of_polygon():
    poly = [(10, 20), (50, 18), (90, 21), (90, 40), (50, 41), (10, 39)]
    tl, tr, br, bl = min_area_quad(poly)
    assert tl[0] < tr[0] and bl[0] < br[0]
    assert tl[1] < bl[1] and tr[1] < br[1]


def test_crop_line_straightens_a_tilted_box():
    page = Image.new("RGB", (200, 200), "white")
    draw = ImageDraw.Draw(page)
    # A dark band tilted by a few pixels; the crop must be about its length by its height.
    quad = [(20, 50), (180, 60), (179, 80), (19, 70)]
    draw.polygon(quad, fill="black")
    crop = crop_line(page, quad, pad=0)
    assert 155 <= crop.width <= 165 and 18 <= crop.height <= 23
    # Straightened: the middle row is dark all along.
    mid = [crop.getpixel((x, crop.height // 2))[0] for x in range(5, crop.width - 5)]
    assert max(mid) < 80


def test_crop_line_pad_grows_the_crop():
    page = Image.new("RGB", (200, 100), "white")
    box = [(50, 40), (150, 40), (150, 60), (50, 60)]
    assert crop_line(page, box, pad=0.1).size > crop_line(page, box, pad=0).size


def test_crop_line_rejects_empty_box():
    with pytest.raises(ValueError):
        crop_line(Image.new("RGB", (10, 10)), [(1, 1), (1, 1), (1, 1), (1, 1)])


def test_bbox():
    assert bbox([(3, 4), (1, 9), (7, 2)]) == (1, 2, 7, 9)


def test_squeeze_width_narrows_and_keeps_height():
    from PIL import Image

    from core.geometry import squeeze_width

    img = Image.new("RGB", (1001, 300), "white")
    assert squeeze_width(img, 2.0).size == (500, 300)
    assert squeeze_width(img, 1.0) is img


def test_overlap_share_is_the_covered_share_of_the_first_box():
    from core.geometry import box_points, overlap_share

    small, big = box_points(0, 0, 10, 10), box_points(5, 0, 100, 10)
    assert overlap_share(small, big) == 0.5
    assert overlap_share(big, small) == 5 / 95
    assert overlap_share(box_points(0, 0, 0, 10), big) == 0.0  # no area: nothing to cover
