"""The synthetic dataset: VOC files, determinism, the shapes it draws, the command line."""
from __future__ import annotations


import numpy as np
import pytest

from frcnn import cli
from frcnn.data.synth import SYNTH_CLASSES, SynthOptions, render_image, write_synth_dataset
from frcnn.data.voc import load_voc
from tests.frcnn.data.conftest import TINY


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout(synth_dir):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        assert (synth_dir / sub).is_dir()
    main = synth_dir / "ImageSets" / "Main"
    train = main.joinpath("train.txt").read_text().split()
    assert train == main.joinpath("trainval.txt").read_text().split()
    test = main.joinpath("test.txt").read_text().split()
    assert len(train) == TINY.num_train and len(test) == TINY.num_test
    assert not set(train) & set(test)
    assert (synth_dir / "classes.txt").read_text().split() == list(SYNTH_CLASSES)
    assert len(list((synth_dir / "JPEGImages").glob("*.jpg"))) == TINY.num_train + TINY.num_test


def test_deterministic_for_a_seed(tmp_path, synth_dir):
    write_synth_dataset(tmp_path / "again", TINY, log=None)
    first, again = _files(synth_dir), _files(tmp_path / "again")
    assert first == again and "synth.json" in first
    other = SynthOptions(**{**TINY.__dict__, "seed": TINY.seed + 1})
    write_synth_dataset(tmp_path / "other", other, log=None)
    assert _files(tmp_path / "other")["Annotations/000001.xml"] != first["Annotations/000001.xml"]


def test_drawn_objects():
    opts = SynthOptions(height=120, width=160, min_object=20, max_object=60, max_objects=4)
    counts, overlapping, kinds = [], 0, set()
    for i in range(80):
        im, objects = render_image(np.random.default_rng((1, i)), opts)
        assert im.shape == (120, 160, 3) and im.dtype == np.uint8
        counts.append(len(objects))
        boxes = np.array([b for _, b in objects]).reshape(-1, 4)
        kinds |= {k for k, _ in objects}
        w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 159) and np.all(boxes[:, 3] <= 119)
        assert np.all(np.maximum(w, h) >= 16) and np.all(np.maximum(w, h) <= 61)
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                iw = min(boxes[a, 2], boxes[b, 2]) - max(boxes[a, 0], boxes[b, 0]) + 1
                ih = min(boxes[a, 3], boxes[b, 3]) - max(boxes[a, 1], boxes[b, 1]) + 1
                overlapping += iw > 0 and ih > 0
    assert min(counts) == 0 and max(counts) == 4      # images without objects, and full ones
    assert overlapping > 0                            # some objects overlap
    assert kinds == set(SYNTH_CLASSES)


def test_bad_options():
    with pytest.raises(ValueError, match="does not fit"):
        SynthOptions(height=60, width=80, max_object=70).check()
    with pytest.raises(ValueError, match="at least one image"):
        SynthOptions(num_train=0, num_test=0).check()


def test_command_line(tmp_path, capsys):
    out = tmp_path / "synth"
    assert cli.main(["data", "synth", "--out", str(out), "--num-train", "6", "--num-test", "2",
                     "--size", "64x80", "--min-object", "16", "--max-object", "40",
                     "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "[synth] 8/8 images" in text and "wrote 8 images (6 train, 2 test" in text
    assert len(load_voc(out, "train")) == 6
    assert cli.main(["data", "info", "synth_test", "--root", str(out)]) == 0
    text = capsys.readouterr().out
    assert "synth_test" in text and "2 images, 4 classes" in text and "circle" in text
    assert cli.main(["data", "info", "nope"]) == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err
