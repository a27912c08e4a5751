import pytest

from core.evaluate import score_lines
from core.metrics import cer, char_diff, char_edits, detection_counts, detection_scores, wer


def box(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_cer_counts_edits_over_reference_characters():
    assert cer(["abcd"], ["abcd"]) == 0.0
    assert cer(["abcd"], ["abxd"]) == pytest.approx(0.25)
    assert cer(["ab", "cd"], ["ab", ""]) == pytest.approx(0.5)
    # empty references carry no characters: ignored, not an error
    assert cer(["", "ab"], ["x", "ab"]) == 0.0


def test_char_edits_are_what_cer_counts():
    assert char_edits("abcd", "abxd") == 1 and char_edits("abcd", "abcd") == 0
    assert char_edits("kitten", "sitting") == 3
    assert char_edits("ab", "") == 2 and char_edits("", "xy") == 2
    assert char_edits("abcd", "axd") == pytest.approx(cer(["abcd"], ["axd"]) * 4)


def test_wer_and_score_lines():
    assert wer(["a b c d"], ["a b x d"]) == pytest.approx(0.25)
    s = score_lines(["ab", "hello world"], ["ab", "hello word"])
    assert s["lines"] == 2 and s["exact"] == 0.5
    assert s["cer_4plus"] == pytest.approx(1 / 11, abs=1e-3)


def test_char_diff_marks_replacements():
    ops = char_diff("cat", "cut")
    assert ("replace", "a", "u") in ops


def test_detection_counts_merged_and_split():
    truth = [box(0, 0, 100, 20), box(0, 30, 100, 50)]
    # one box over both lines: merged; no match at IoU 0.5
    c = detection_counts(truth, [box(0, 0, 100, 50)])
    assert c["tp"] == 0 and c["merged"] == 2
    # the first line cut in three: split
    c = detection_counts(truth, [box(0, 0, 33, 20), box(33, 0, 66, 20), box(66, 0, 100, 20), box(0, 30, 100, 50)])
    assert c["tp"] == 1 and c["split"] == 1
    s = detection_scores([detection_counts(truth, truth)])
    assert s["precision"] == s["recall"] == s["f1"] == 1.0


def test_a_line_matched_but_cut_short_is_counted():
    truth = [box(0, 0, 400, 20), box(0, 30, 400, 50)]
    # the first box misses the line's last quarter: IoU 0.75 matches it, cut_short says what is lost
    c = detection_counts(truth, [box(0, 0, 300, 20), box(0, 30, 390, 50)])
    assert c["tp"] == 2 and c["cut_short"] == 1
    assert detection_scores([c])["cut_short"] == 0.5
    assert detection_scores([detection_counts(truth, truth)])["cut_short"] == 0.0


def test_detection_report_splits_recall_by_line_width():
    from core.evaluate import detection_report
    from core.geometry import box_points

    size = (640, 640)  # widths in page px are then widths at 640
    truth = [box_points(10, 10, 20, 30), box_points(10, 50, 90, 70), box_points(10, 90, 400, 110)]
    preds = [box_points(10, 50, 90, 70), box_points(11, 90, 400, 111)]  # the single character is missed
    report = detection_report([truth], [preds], [size])
    assert report["recall_by_width"] == {"<30": 0.0, "30-120": 1.0, ">=240": 1.0}
    assert report["recall"] == round(2 / 3, 4) and report["precision"] == 1.0
