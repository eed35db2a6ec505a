"""The ``frcnn data`` subcommands (registered by frcnn.cli).

  frcnn data synth --out DIR [--num-train 300 --num-test 100 --size 240x320
      --min-object 24 --max-object 96 --max-objects 4 --seed 3]
      [--format voc|coco]
      write the synthetic VOC-format dataset (circles, squares, triangles); --format coco
      also writes its COCO form, DIR/annotations/instances_{train,test}.json (images stay
      in DIR/JPEGImages, which the json's file_name values name)
  frcnn data info DATASET [--root DIR] [--split S] [--classes LIST|FILE] [--images DIR]
      [--skip-bad]
      read a dataset (a name such as synth_train or voc_2007_trainval, a VOC folder or a
      COCO .json) and print the class list in use and where it comes from, every object name
      in a VOC folder's annotations with its object and image counts (marking names outside
      the list), then the split's images, objects per class, difficult (or crowd) objects
      and images without objects
  frcnn data convert SRC --to coco|voc --out DEST [--split S] [--images DIR] [--classes L]
      [--skip-bad]
      a VOC folder's split (or a named dataset) -> a COCO .json file DEST, or a COCO .json
      -> a VOC folder DEST (images copied; split named after the json unless --split)

Nothing heavy is imported at module import time.
"""
from __future__ import annotations

import argparse
from typing import Any


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got {text!r}") from None
    return h, w


def _cmd_synth(args: argparse.Namespace) -> int:
    from frcnn.data.synth import SynthOptions, write_synth_dataset

    if args.format not in ("voc", "coco"):
        raise ValueError(f"--format must be voc or coco, got {args.format!r}")

    opts = SynthOptions(num_train=args.num_train, num_test=args.num_test,
                        height=args.size[0], width=args.size[1], min_object=args.min_object,
                        max_object=args.max_object, max_objects=args.max_objects,
                        seed=args.seed)
    summary = write_synth_dataset(args.out, opts)
    if args.format == "coco":
        for path in write_synth_coco(args.out):
            print(f"[synth] wrote {path}")
    objects = ", ".join(f"{k} {v}" for k, v in summary["objects"].items())
    print(f"[synth] wrote {summary['images']} images ({summary['train']} train, "
          f"{summary['test']} test; {summary['empty_images']} without objects; {objects}) "
          f"to {args.out} in {summary['seconds']:.1f}s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from frcnn.data.datasets import get_dataset, parse_classes
    from frcnn.data.voc import annotation_names

    dataset = get_dataset(args.dataset, args.root, args.split, parse_classes(args.classes),
                          images=args.images)
    in_use = list(dataset.classes[1:])
    print(f"{dataset.name}: {dataset.root} split {dataset.split}")
    print(f"class list in use: {len(in_use)} classes ({dataset.num_classes} with the "
          f"background), from {dataset.classes_from or 'the dataset'}")
    if dataset.format == "voc":
        found = annotation_names(dataset.root)
        print(f"object names in {dataset.root / 'Annotations'} (every split):")
        outside = [n for n in found if n not in in_use]  # sorted, as found is
        for name in in_use + outside:
            objects, images = found.get(name, (0, 0))
            mark = "" if name in in_use else "   <- not in the class list"
            print(f"  {name:<16} {objects:6d} objects in {images:5d} images{mark}")
        if outside:
            print(f"names outside the class list: {', '.join(outside)} (training would stop "
                  f"at the first of them); {dataset.class_list_hint}")
            return 0
    _print_split_counts(dataset, dataset.load(skip_bad=args.skip_bad))
    return 0


def _print_split_counts(dataset, records: list) -> None:
    """Images, objects and difficult (or crowd) objects per class in the split."""
    import numpy as np

    print(f"split {dataset.split}: {len(records)} images, {dataset.num_classes} classes with "
          "background")
    classes = np.concatenate([r["gt_classes"] for r in records])
    difficult = np.concatenate([r["difficult"] for r in records])
    for c, name in enumerate(dataset.classes):
        if c:
            n = int(np.sum(classes == c))
            cat = f" (id {dataset.category_ids[c - 1]})" if dataset.category_ids else ""
            print(f"  {name + cat:<16} {n:6d} objects ({int(np.sum(difficult[classes == c]))} "
                  f"{'crowd' if dataset.format == 'coco' else 'difficult'})")
    empty = sum(len(r["gt_classes"]) == 0 for r in records)
    print(f"  images without objects: {empty}")


def write_synth_coco(root) -> list:
    """The COCO form of a synthetic dataset: ROOT/annotations/instances_{train,test}.json
    (category ids 1..3, image ids the VOC ids as numbers)."""
    from pathlib import Path

    from frcnn.data.coco import write_coco
    from frcnn.data.datasets import get_dataset

    paths = []
    for split in ("train", "test"):
        dataset = get_dataset(str(Path(root).absolute()), split=split)
        if not (dataset.root / "ImageSets" / "Main" / f"{split}.txt").read_text().strip():
            continue  # an empty split (--num-test 0)
        paths.append(write_coco(dataset.load(log=None), dataset.classes,
                                dataset.root / "annotations" / f"instances_{split}.json"))
    return paths


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from frcnn.data import coco
    from frcnn.data.datasets import get_dataset

    if args.to == "coco":
        if coco.is_coco_path(args.src):
            raise ValueError(f"{args.src} is already a COCO file")
        if not coco.is_coco_path(args.out):
            raise ValueError(f"--to coco writes a .json file; --out is {args.out}")
        from frcnn.data.datasets import parse_classes

        dataset = get_dataset(args.src, split=args.split, classes=parse_classes(args.classes))
        records = dataset.load(skip_bad=args.skip_bad)
        path = coco.write_coco(records, dataset.classes, args.out)
        print(f"[convert] {dataset.name} split {dataset.split}: {len(records)} images -> "
              f"{path} (file_name relative to {coco.default_images_dir(path)} for images "
              f"under it, else absolute)")
        return 0
    if not coco.is_coco_path(args.src):
        raise ValueError(f"--to voc reads a COCO .json file; got {args.src}")
    dataset = get_dataset(args.src, images=args.images)
    records = dataset.load(skip_bad=args.skip_bad)
    split = args.split or dataset.split
    dest = coco.write_voc(records, dataset.classes, Path(args.out), split)
    print(f"[convert] {dataset.name}: {len(records)} images -> {dest} split {split} "
          f"(crowd objects written as difficult; COCO category ids "
          f"{list(dataset.category_ids)} not kept)")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("data", help="datasets: write the synthetic one, inspect or "
                                           "convert one")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("synth", help="write the synthetic VOC-format dataset")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument("--num-train", type=int, default=300, help="training images (300)")
    s.add_argument("--num-test", type=int, default=100, help="test images (100)")
    s.add_argument("--size", type=_size, default=(240, 320), metavar="HxW",
                   help="image size (240x320)")
    s.add_argument("--min-object", type=int, default=24, help="smallest object side (24)")
    s.add_argument("--max-object", type=int, default=96, help="largest object side (96)")
    s.add_argument("--max-objects", type=int, default=4, help="objects per image at most (4)")
    s.add_argument("--seed", type=int, default=3)
    s.add_argument("--format", default="voc", choices=("voc", "coco"),
                   help="coco: also write annotations/instances_{train,test}.json")
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("info", help="read a dataset and count its images and objects")
    i.add_argument("dataset", help="a name (synth_train, voc_2007_trainval, ...) or a path")
    i.add_argument("--root", help="folder of a named dataset")
    i.add_argument("--split", help="split of a dataset given by path (trainval)")
    i.add_argument("--classes", default="", help="class names, comma-separated, or a file")
    i.add_argument("--images", metavar="DIR", help="image folder of a COCO .json dataset")
    i.add_argument("--skip-bad", action="store_true",
                   help="skip bad images and objects with a warning instead of stopping")
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("convert", help="convert a dataset: VOC folder <-> COCO .json")
    c.add_argument("src", help="a VOC folder (or dataset name) for --to coco, a COCO .json "
                               "for --to voc")
    c.add_argument("--to", required=True, choices=("coco", "voc"))
    c.add_argument("--out", required=True, help="the .json file (coco) or folder (voc)")
    c.add_argument("--split", help="split of the VOC folder read (trainval), or the split "
                                   "written (default: named after the json)")
    c.add_argument("--images", metavar="DIR", help="image folder of the COCO .json")
    c.add_argument("--classes", default="", help="the VOC folder's class list (--to coco), "
                   "comma-separated, or a file")
    c.add_argument("--skip-bad", action="store_true")
    c.set_defaults(func=_cmd_convert)
