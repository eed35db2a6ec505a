"""The ``frcnn data`` subcommands (registered by frcnn.cli).

  frcnn data synth --out DIR [--num-train 300 --num-test 100 --size 240x320
      --min-object 24 --max-object 96 --max-objects 4 --seed 3]
      write the synthetic VOC-format dataset (circles, squares, triangles)
  frcnn data info DATASET [--root DIR] [--split S] [--classes LIST|FILE] [--skip-bad]
      read a dataset (a name such as synth_train or voc_2007_trainval, or a path) and print
      its images, objects per class, difficult objects and images without objects

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

    opts = SynthOptions(num_train=args.num_train, num_test=args.num_test,
                        height=args.size[0], width=args.size[1], min_object=args.min_object,
                        max_object=args.max_object, max_objects=args.max_objects,
                        seed=args.seed)
    summary = write_synth_dataset(args.out, opts)
    objects = ", ".join(f"{k} {v}" for k, v in summary["objects"].items())
    print(f"[synth] wrote {summary['images']} images ({summary['train']} train, "
          f"{summary['test']} test; {summary['empty_images']} without objects; {objects}) "
          f"to {args.out} in {summary['seconds']:.1f}s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from frcnn.data.datasets import get_dataset, parse_classes

    dataset = get_dataset(args.dataset, args.root, args.split, parse_classes(args.classes))
    records = dataset.load(skip_bad=args.skip_bad)
    print(f"{dataset.name}: {dataset.root} split {dataset.split}, {len(records)} images, "
          f"{dataset.num_classes} classes with background")
    classes = np.concatenate([r["gt_classes"] for r in records])
    difficult = np.concatenate([r["difficult"] for r in records])
    for c, name in enumerate(dataset.classes):
        if c:
            n = int(np.sum(classes == c))
            print(f"  {name:<16} {n:6d} objects ({int(np.sum(difficult[classes == c]))} "
                  f"difficult)")
    empty = sum(len(r["gt_classes"]) == 0 for r in records)
    print(f"  images without objects: {empty}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("data", help="datasets: write the synthetic one, inspect one")
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
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("info", help="read a dataset and count its images and objects")
    i.add_argument("dataset", help="a name (synth_train, voc_2007_trainval, ...) or a path")
    i.add_argument("--root", help="folder of a named dataset")
    i.add_argument("--split", help="split of a dataset given by path (trainval)")
    i.add_argument("--classes", default="", help="class names, comma-separated, or a file")
    i.add_argument("--skip-bad", action="store_true",
                   help="skip bad images and objects with a warning instead of stopping")
    i.set_defaults(func=_cmd_info)
