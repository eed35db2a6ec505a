"""Datasets by name or by path.

Names (``list_datasets()`` lists the registered ones):

  synth_train, synth_test, synth_trainval
      the synthetic dataset (``frcnn data synth``); root default ``data/synth``
  voc_<year>_<split>   year 2007 or 2012, split train, val, trainval or test
      PASCAL VOC; root default ``data/VOCdevkit<year>``: either a devkit holding
      ``VOC<year>/`` (py-faster-rcnn's layout) or the ``VOC<year>`` folder itself
  a path
      any VOC-format folder; the split defaults to trainval
  a path ending in .json
      a COCO instances file (``frcnn.data.coco``); ``images`` is its image folder (default
      ``frcnn.data.coco.default_images_dir``); the split is named after the file

``register_dataset(name, factory)`` adds a name; ``factory(root or None)`` returns the
``Dataset``.  Relative roots are taken from the current directory.  The class list of a
folder (``frcnn.data.voc.folder_class_list``) is the given one (``--classes``), else its
``classes.txt``, else for a PASCAL VOC devkit folder (``voc_*`` names, or ``VOC2007`` /
``VOC2012`` in a ``VOCdevkit``) the 20 VOC classes, else the names in its annotations,
sorted (said once per folder; the run records them, so ``frcnn test`` and ``detect`` use
the same order).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from frcnn.data import coco
from frcnn.data.problems import path_is
from frcnn.data.roidb import training_roidb
from frcnn.data.voc import (ClassList, check_class_names, folder_class_list, load_voc,
                            read_class_file)

SYNTH_ROOT = "data/synth"
DEFAULT_SPLIT = "trainval"


@dataclass(frozen=True)
class Dataset:
    """A split of a VOC-format folder, with its class list (``__background__`` first), or a
    COCO file (``format`` 'coco': ``annotations`` the file, ``root`` its image folder,
    ``category_ids`` the COCO id of each class after the background)."""

    name: str
    root: Path
    split: str
    classes: tuple[str, ...]
    format: str = "voc"
    annotations: Path | None = None
    category_ids: tuple[int, ...] = ()
    classes_source: str = ""      # voc.ClassList.source: given, file, pascal-voc, annotations
    classes_from: str = ""        # where the class list came from, in words

    @property
    def class_list_hint(self) -> str:
        """Where the class list came from and how to change it ("" when unknown)."""
        if not self.classes_from:
            return ""
        return ClassList(self.classes, self.classes_source, self.classes_from).hint(self.root)

    @property
    def class_hint(self) -> str:
        """``class_list_hint``, and for a VOC folder the command that lists its names (the
        unknown-class error's advice)."""
        if not self.classes_from or self.format != "voc":
            return self.class_list_hint
        return (f"{self.class_list_hint}; `frcnn data info {self.root}` lists the names in "
                f"its annotations")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, skip_bad: bool = False, log=print) -> list[dict]:
        """Every image record of the split (``frcnn.data.voc.load_voc`` or
        ``frcnn.data.coco.load_coco``)."""
        if self.format == "coco":
            return coco.load_coco(self.annotations, self.root, skip_bad=skip_bad, log=log)
        return load_voc(self.root, self.split, self.classes, skip_bad=skip_bad, log=log,
                        class_hint=self.class_hint)

    def training_roidb(self, flip: bool, use_difficult: bool = False, skip_bad: bool = False,
                       log=print, keep_empty: bool = False) -> list[dict]:
        """The roidb to train on (``frcnn.data.roidb.training_roidb`` of ``load()``)."""
        return training_roidb(self.load(skip_bad, log), self.num_classes, flip,
                              use_difficult, log, keep_empty=keep_empty)


def _expanded(path: str | os.PathLike) -> Path:
    """``~`` expanded; a ``~user`` that does not exist is left as it is (a plain name)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def _absolute(path: str | os.PathLike) -> Path:
    return _expanded(path).absolute()


def _synth(split: str) -> Callable[[str | None], Dataset]:
    def make(root: str | None) -> Dataset:
        folder = _absolute(root or SYNTH_ROOT)
        if not path_is(folder / "Annotations", "dir"):
            raise FileNotFoundError(f"dataset synth_{split}: no synthetic dataset at {folder} "
                                    f"(write one with `frcnn data synth --out {folder}`)")
        return _folder_dataset(f"synth_{split}", folder, split, folder_class_list(folder))
    return make


def _voc(year: str, split: str) -> Callable[[str | None], Dataset]:
    def make(root: str | None) -> Dataset:
        base = _absolute(root or f"data/VOCdevkit{year}")
        folder = base / f"VOC{year}" if path_is(base / f"VOC{year}", "dir") else base
        if not path_is(folder / "Annotations", "dir"):
            raise FileNotFoundError(
                f"dataset voc_{year}_{split}: no VOC{year} folder under {base} (expected "
                f"{base / f'VOC{year}' / 'Annotations'} or {base / 'Annotations'}); give the "
                f"root of the devkit")
        return _folder_dataset(f"voc_{year}_{split}", folder, split,
                               folder_class_list(folder, pascal_voc=True))
    return make


_ANNOUNCED: set[Path] = set()


def _folder_dataset(name: str, folder: Path, split: str, class_list: ClassList) -> Dataset:
    """A VOC-format folder's Dataset; a class list read off the annotations is said once per
    folder and process (its order is what the model's outputs will mean)."""
    if class_list.source == "annotations" and folder not in _ANNOUNCED:
        _ANNOUNCED.add(folder)
        print(f"[data] {folder}: no classes.txt; classes from its annotations, sorted: "
              f"{', '.join(class_list.names[1:])} ({class_list.fix(folder)})", flush=True)
    return Dataset(name, folder, split, class_list.names, classes_source=class_list.source,
                   classes_from=class_list.where)


_REGISTRY: dict[str, Callable[[str | None], Dataset]] = {}


def register_dataset(name: str, factory: Callable[[str | None], Dataset]) -> None:
    """Add (or replace) a dataset name; ``factory(root or None)`` makes the Dataset."""
    _REGISTRY[name] = factory


for _split in ("train", "test", "trainval"):
    register_dataset(f"synth_{_split}", _synth(_split))
for _year in ("2007", "2012"):
    for _split in ("train", "val", "trainval", "test"):
        register_dataset(f"voc_{_year}_{_split}", _voc(_year, _split))


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def parse_classes(text: str) -> tuple[str, ...] | None:
    """A class-list option: '' -> None (the folder's default), an existing file -> its
    names, else comma-separated names."""
    if not text.strip():
        return None
    if path_is(_expanded(text)):
        return read_class_file(_expanded(text))
    return check_class_names([n for n in text.split(",") if n.strip()])


def coco_dataset(json_path: str | os.PathLike, images: str | os.PathLike | None = None
                 ) -> Dataset:
    """The Dataset of a COCO instances file (its categories are read now)."""
    path = _absolute(json_path)
    data = coco.read_coco_file(path)
    classes, category_ids = coco.coco_categories(data, str(path))
    folder = _absolute(images) if images else coco.default_images_dir(path)
    if not path_is(folder, "dir"):
        raise FileNotFoundError(f"image folder of {path} not found: {folder} (give --images "
                                f"DIR)")
    return Dataset(str(path), folder, coco.split_name(path), classes, "coco", path,
                   category_ids, classes_source="coco",
                   classes_from=f"the categories of {path}")


def get_dataset(name: str, root: str | None = None, split: str | None = None,
                classes: Sequence[str] | None = None,
                images: str | os.PathLike | None = None) -> Dataset:
    """The dataset called ``name`` (a registered name, a folder path or a COCO .json file).

    Args:
        root: the folder of a registered name (default: the name's own; an error with a
            path name).
        split: only for a path name (default trainval); a registered name fixes its split.
        classes: class names (without background) overriding the folder's list.
        images: only for a COCO file: its image folder.
    """
    if not name:
        raise ValueError("no dataset name given")
    if coco.is_coco_path(name) and name not in _REGISTRY:
        given = [k for k, v in (("root", root), ("split", split), ("classes", classes))
                 if v]
        if given:
            raise ValueError(f"dataset {name} is a COCO file: its split and classes come "
                             f"from it; {', '.join(given)} not allowed (use images)")
        return coco_dataset(name, images)
    if images:
        raise ValueError(f"dataset {name!r}: 'images' is only for a COCO .json file")
    if name in _REGISTRY:
        dataset = _REGISTRY[name](root or None)
        if split and split != dataset.split:
            raise ValueError(f"dataset {name} is split '{dataset.split}'; a split "
                             f"('{split}') is only for a dataset given by path")
    elif os.sep in name or "/" in name or path_is(_expanded(name), "dir"):
        if root:
            raise ValueError(f"dataset {name!r} is a path; 'root' is only for a named dataset")
        folder = _absolute(name)
        if not path_is(folder, "dir"):
            raise FileNotFoundError(f"dataset folder not found: {folder}")
        if classes is not None:
            return _folder_dataset(str(folder), folder, split or DEFAULT_SPLIT,
                                   folder_class_list(folder, classes))
        dataset = _folder_dataset(str(folder), folder, split or DEFAULT_SPLIT,
                                  folder_class_list(folder))
    else:
        raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(list_datasets())} "
                         f"or the path of a VOC-format folder or a COCO .json file")
    if classes is not None:
        dataset = _folder_dataset(dataset.name, dataset.root, dataset.split,
                                  folder_class_list(dataset.root, classes))
    return dataset
