"""frcnn detect --jsonl: inputs from files, folders, patterns and lists; one JSON line per
image, streamed; resume; an unreadable image is an error line, not the end of the run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from frcnn import cli
from frcnn.app.detect_stream import expand_inputs, read_list_file, written_images
from tests.tiny_synth import SMALL, write_tiny_synth


def test_inputs_from_files_folders_patterns_and_lists(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/2.jpg", "a/1.png", "a/notes.txt", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    listed = tmp_path / "list.txt"
    listed.write_text("# mine\nb.jpg\n\n/abs/missing.jpg\n")
    paths = expand_inputs([str(tmp_path / "c.jpg"), str(tmp_path / "a"), str(tmp_path / "*.jpg")],
                          listed)
    assert paths == [str(tmp_path / "c.jpg"), str(tmp_path / "a/1.png"),
                     str(tmp_path / "a/2.jpg"), str(tmp_path / "b.jpg"), "/abs/missing.jpg"]
    assert read_list_file(listed) == [str(tmp_path / "b.jpg"), "/abs/missing.jpg"]
    with pytest.raises(ValueError, match=r"no image matches '.*\*.gif'"):
        expand_inputs([str(tmp_path / "*.gif")])
    with pytest.raises(FileNotFoundError, match="image list not found"):
        read_list_file(tmp_path / "nope.txt")


def test_a_line_cut_short_by_a_crash_is_dropped(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"image": "a.jpg", "detections": []}\n{"image": "b.jpg", "det')
    assert written_images(out) == {"a.jpg"}
    assert out.read_text() == '{"image": "a.jpg", "detections": []}\n'
    assert written_images(tmp_path / "none.jsonl") == set()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from frcnn import config

    data = write_tiny_synth(tmp_path_factory.mktemp("synth"), 6, 3)
    out = tmp_path_factory.mktemp("run")
    with config.preserved():
        assert cli.main(["train", "--dataset", "synth_train", "--root", str(data), "--iters",
                         "2", "--out", str(out), "--force", "--set", *SMALL]) == 0
    (path,) = sorted(out.glob("*.caffemodel"))
    return path, data


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stream_resume_and_error_lines(model, tmp_path, capsys, cfg):
    path, data = model
    images = sorted((data / "JPEGImages").glob("*.jpg"))[:4]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out" / "results.jsonl"
    args = ["--model", str(path), "--jsonl", str(out), "--thresh", "0", "--set", *SMALL]
    assert cli.main(["detect", str(images[0]), str(bad), str(images[1]), *args]) == 0
    first = _lines(out)
    assert [r["image"] for r in first] == [str(images[0]), str(bad), str(images[1])]
    assert "error" in first[1] and str(bad) in first[1]["image"]
    assert first[0]["width"] == 128 and first[0]["height"] == 96
    assert all(set(d) == {"class", "score", "box"} for d in first[0]["detections"])
    assert "images/s" in capsys.readouterr().out
    # an interrupted run: its last line half written; the resume completes the rest once
    out.write_text(out.read_text() + '{"image": "x')
    listed = tmp_path / "all.txt"
    listed.write_text("\n".join(str(p) for p in [images[0], bad, *images[1:]]) + "\n")
    assert cli.main(["detect", "--from", str(listed), "--resume", *args]) == 0
    second = _lines(out)
    assert [r["image"] for r in second] == [str(p) for p in [images[0], bad, *images[1:]]]
    assert second[:3] == first  # what was written stays as it was
    assert "resuming: 3 of 5 images already in" in capsys.readouterr().out
    # without --resume the file starts anew
    assert cli.main(["detect", str(images[2]), *args]) == 0
    assert [r["image"] for r in _lines(out)] == [str(images[2])]


def test_from_and_resume_need_jsonl(model, capsys):
    path, data = model
    assert cli.main(["detect", "--model", str(path), "--resume", str(data)]) == 1
    assert "--from and --resume go with --jsonl FILE" in capsys.readouterr().err
