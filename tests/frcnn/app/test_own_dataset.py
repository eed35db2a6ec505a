"""Training on one's own VOC folder in one command: the class list from the annotations,
``--classes``, ``classes.txt``, PASCAL VOC's devkit layout, and errors that say how to fix
them (issue: 'your own dataset in one command')."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from frcnn import cli, config
from frcnn.data.datasets import get_dataset
from frcnn.data.problems import DatasetError
from frcnn.data.voc import VOC_CLASSES, annotation_names, folder_class_list, load_voc
from frcnn.caffe_files import read_sidecar
from tests.tiny_synth import SMALL, write_tiny_synth

RENAMES = {"circle": "cat", "square": "dog", "triangle": "bird"}  # all three are VOC names


@pytest.fixture(autouse=True)
def restore_cfg(cfg):
    """Each test's commands install their cfg; the conftest's ``cfg`` puts it back."""
    yield


def own_folder(root: Path, renames: dict[str, str] = RENAMES) -> Path:
    """The tiny synthetic folder as a user's own: no classes.txt, other names."""
    write_tiny_synth(root, 8, 3)
    (root / "classes.txt").unlink()
    for xml in (root / "Annotations").glob("*.xml"):
        text = xml.read_text()
        for old, new in renames.items():
            text = text.replace(f"<name>{old}</name>", f"<name>{new}</name>")
        xml.write_text(text)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return own_folder(tmp_path_factory.mktemp("mine"))


def _train(folder: Path, out: Path, *extra: str) -> Path:
    args = ["train", "--net", "squeezenet/faster_rcnn_end2end", "--dataset", str(folder),
            "--iters", "2", "--out", str(out), "--base-lr", "0.001", "--scales", "1.5,3",
            "--iter-size", "1", "--display", "1", "--set", *SMALL, *extra]
    assert cli.main(args) == 0
    (model,) = sorted(out.glob("*.caffemodel"))
    return model


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    saved = copy.deepcopy(config.cfg)
    model = _train(folder, tmp_path_factory.mktemp("run"))
    config.cfg.clear()
    config.cfg.update(saved)
    return model


# ---------------------------------------------------------------- the class list's source

def test_names_that_are_voc_classes_give_exactly_those_classes(folder, capsys):
    dataset = get_dataset(str(folder / ".." / folder.name))
    assert dataset.classes == ("__background__", "bird", "cat", "dog")  # sorted, not VOC's 20
    assert dataset.classes_source == "annotations"
    assert annotation_names(folder).keys() == {"bird", "cat", "dog"}


def test_the_class_list_is_said_once_per_folder(tmp_path, capsys):
    root = own_folder(tmp_path / "once")
    get_dataset(str(root))
    get_dataset(str(root), split="test")
    out = capsys.readouterr().out
    assert out.count("classes from its annotations, sorted: bird, cat, dog") == 1
    assert "classes.txt" in out and "--classes" in out


def test_precedence_classes_option_then_classes_txt_then_devkit_then_annotations(tmp_path):
    root = own_folder(tmp_path / "p")
    assert folder_class_list(root).source == "annotations"
    assert folder_class_list(root, ["dog", "cat", "bird"]).names[1:] == ("dog", "cat", "bird")
    (root / "classes.txt").write_text("dog\nbird\ncat\n")
    assert folder_class_list(root).names[1:] == ("dog", "bird", "cat")
    assert folder_class_list(root).source == "file"
    assert folder_class_list(root, ["cat", "dog", "bird"]).source == "given"
    devkit = tmp_path / "VOCdevkit" / "VOC2007"
    shutil.copytree(root, devkit)
    (devkit / "classes.txt").unlink()
    assert folder_class_list(devkit).names[1:] == VOC_CLASSES  # as py-faster-rcnn
    assert get_dataset("voc_2007_trainval", root=str(tmp_path / "VOCdevkit")).num_classes == 21


def test_an_unknown_class_says_where_the_list_came_from_and_how_to_change_it(tmp_path):
    root = own_folder(tmp_path / "w", {"circle": "widget"})
    (root / "classes.txt").write_text("square\ntriangle\n")
    with pytest.raises(DatasetError) as e:
        get_dataset(str(root), split="train").load()
    text = str(e.value)
    assert "unknown class 'widget'" in text and str(root / "classes.txt") in text
    assert "--classes" in text
    devkit = tmp_path / "VOCdevkit" / "VOC2007"
    shutil.copytree(root, devkit)
    (devkit / "classes.txt").unlink()
    with pytest.raises(DatasetError, match=r"unknown class '\w+'.*PASCAL VOC's 20 classes"
                                           ".*--classes"):
        load_voc(devkit, "train")


def test_an_annotation_folder_without_names_asks_for_the_list(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation></annotation>")
    with pytest.raises(DatasetError, match="class list is unknown: pass --classes"):
        folder_class_list(tmp_path)


# ------------------------------------------------------------------------- data info

def test_data_info_lists_every_name_and_marks_those_outside_the_list(tmp_path, capsys):
    root = own_folder(tmp_path / "i", {"circle": "widget"})
    (root / "classes.txt").write_text("square\ntriangle\n")
    assert cli.main(["data", "info", str(root), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert f"from {root / 'classes.txt'}" in out
    counts = annotation_names(root)
    line = next(l for l in out.splitlines() if l.strip().startswith("widget"))
    assert f"{counts['widget'][0]} objects in" in line and "not in the class list" in line
    assert "names outside the class list: widget" in out
    square = next(l for l in out.splitlines() if l.strip().startswith("square"))
    assert "not in the class list" not in square
    # with the list given, everything loads and the split's counts follow
    assert cli.main(["data", "info", str(root), "--split", "train",
                     "--classes", "widget,square,triangle"]) == 0
    out = capsys.readouterr().out
    assert "from --classes" in out and "split train:" in out and "outside" not in out


# ---------------------------------------------------------- train -> test -> detect

def test_one_command_trains_a_model_of_the_folders_classes(trained):
    meta = read_sidecar(trained)
    assert meta["classes"] == ["__background__", "bird", "cat", "dog"]
    run = json.loads((trained.parent / "run.json").read_text())
    assert run["classes"] == meta["classes"]
    assert "num_output: 4" in (trained.parent / "net" / "test.prototxt").read_text()


def test_test_and_detect_use_the_models_names(trained, folder, tmp_path, capsys):
    assert cli.main(["test", "--model", str(trained), "--dataset", str(folder), "--split",
                     "test", "--out", str(tmp_path / "t"), "--set", *SMALL]) == 0
    assert "[test] 3/3 images" in capsys.readouterr().out  # the test split, not trainval
    text = (tmp_path / "t" / "eval.txt").read_text()
    assert all(name in text for name in ("bird", "cat", "dog"))
    image = sorted((folder / "JPEGImages").glob("*.jpg"))[0]
    assert cli.main(["detect", "--model", str(trained), str(image), "--out",
                     str(tmp_path / "d"), "--thresh", "0", "--set", *SMALL]) == 0
    found = json.loads((tmp_path / "d" / "detections.json").read_text())
    names = {d["class"] for d in found[0]["detections"]}
    assert names <= {"bird", "cat", "dog"} and names


def test_classes_order_wins_and_test_follows_the_model(folder, tmp_path, capsys):
    model = _train(folder, tmp_path / "ordered", "--classes", "dog,cat,bird")
    assert read_sidecar(model)["classes"] == ["__background__", "dog", "cat", "bird"]
    # the folder has no list of its own: frcnn test takes the model's order
    assert cli.main(["test", "--model", str(model), "--dataset", str(folder), "--out",
                     str(tmp_path / "t"), "--max-images", "1", "--set", *SMALL]) == 0
    # a list that differs from the model's is refused with the fix
    assert cli.main(["test", "--model", str(model), "--dataset", str(folder), "--out",
                     str(tmp_path / "t2"), "--classes", "bird,cat,dog", "--max-images", "1",
                     "--set", *SMALL]) == 1
    assert "pass --classes dog,cat,bird" in capsys.readouterr().err
