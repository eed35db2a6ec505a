"""frcnn.data.problems: raise or skip, the counts, the printing limit and the summary."""
from __future__ import annotations

import io

import pytest

from frcnn.data.problems import DatasetError, Problems, path_is


def test_raise_by_default():
    p = Problems()
    assert p.skip is False and p.max_printed == 20
    with pytest.raises(DatasetError, match="bad box"):
        p.report(DatasetError("bad box"), "object")
    assert p.count == 0
    assert issubclass(DatasetError, ValueError)


def test_skip_counts_images_and_objects_apart():
    out = io.StringIO()
    p = Problems(skip=True, out=out)
    p.report(DatasetError("a"), "object")
    p.report(FileNotFoundError("b"))
    p.report(DatasetError("c"), "object")
    p.report(DatasetError("d"), "image")
    assert (p.skipped_images, p.skipped_objects, p.count) == (2, 2, 4)
    assert out.getvalue() == ("[data] warning: skipping object: a\n"
                              "[data] warning: skipping image: b\n"
                              "[data] warning: skipping object: c\n"
                              "[data] warning: skipping image: d\n")
    assert p.summary() == "skipped 2 image(s) and 2 object(s) with problems"


def test_printing_stops_after_max_printed_with_one_note():
    out = io.StringIO()
    p = Problems(skip=True, out=out, max_printed=2)
    for i in range(5):
        p.report(DatasetError(f"e{i}"), "object")
    assert out.getvalue().splitlines() == [
        "[data] warning: skipping object: e0",
        "[data] warning: skipping object: e1",
        "[data] warning: more problems; only counting them now",
    ]
    assert p.count == 5 and p.summary() == "skipped 0 image(s) and 5 object(s) with problems"
    # the note comes with the first problem past the limit
    out = io.StringIO()
    p = Problems(skip=True, out=out, max_printed=1)
    p.report(DatasetError("a"))
    p.report(DatasetError("b"))
    assert out.getvalue() == ("[data] warning: skipping image: a\n"
                              "[data] warning: more problems; only counting them now\n")


def test_warnings_go_to_stderr_by_default(capsys):
    Problems(skip=True).report(DatasetError("x"))
    captured = capsys.readouterr()
    assert captured.err == "[data] warning: skipping image: x\n" and captured.out == ""


def test_path_is(tmp_path):
    (tmp_path / "f").write_text("x")
    assert path_is(tmp_path / "f") is True and path_is(tmp_path / "f", "file") is True
    assert path_is(tmp_path / "f", "dir") is False
    assert path_is(tmp_path, "dir") is True and path_is(tmp_path) is False
    assert path_is(tmp_path / "missing") is False and path_is(tmp_path / "missing", "dir") is False
    too_long = tmp_path / ("x" * 5000)  # the OS refuses the name: False, not OSError
    assert path_is(too_long) is False and path_is(too_long, "dir") is False
