"""The ``frcnn prototxt`` and ``frcnn check`` subcommands (registered by frcnn.cli).

  frcnn prototxt --all [--out prototxts]
      regenerate every preset (the committed prototxts/, run from the repository root)
  frcnn prototxt --variant squeezenet/faster_rcnn_end2end --out DIR [--num-classes 21]
      [--anchors seed | --ratios 0.5 1 2 --scales 8 16 32] [--scale 600 --max-size 1000]
      [--ohem | --no-ohem] [--iters N --stepsize N --base-lr X --iter-size N --display N]
      [--data-param KEY=VALUE ...] [--net-dir PATH]
      one variant, changed, for a user's dataset or a short run
  frcnn prototxt --list
  frcnn check NET.prototxt [...] [--phase auto|TRAIN|TEST] [--no-imports]
      [--input-size 600x1000] [-v]
      exit status 1 when a net has a problem

Nothing heavy is imported at module import time.
"""
from __future__ import annotations

import argparse
import ast
from typing import Any


def _data_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value  # a bare string
    if isinstance(parsed, (dict, set)) or parsed is None:
        raise argparse.ArgumentTypeError(f"{text!r}: values are numbers, strings, booleans or "
                                         f"lists")
    return key.strip(), parsed


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "prototxt", help="generate train/test/solver prototxts and the cfg file of a variant",
        description="Generate the Faster R-CNN nets (train.prototxt, test.prototxt, "
                    "solver.prototxt, config.yml) of a variant.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true",
                       help="every preset, under --out/<variant> (default out: prototxts)")
    which.add_argument("--variant", metavar="NAME", help="a preset to start from (see --list)")
    which.add_argument("--list", action="store_true", help="list the presets")
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument("--net-dir", metavar="PATH",
                   help="folder the solver names for train.prototxt (default: --out as given)")
    p.add_argument("--num-classes", type=int, metavar="K", help="classes with background")
    p.add_argument("--anchors", choices=("default", "seed"),
                   help="anchor preset: default 3 ratios x 3 scales; seed 7 x 10 = 70")
    p.add_argument("--ratios", type=float, nargs="+", metavar="R", help="anchor ratios (h/w)")
    p.add_argument("--scales", type=float, nargs="+", metavar="S",
                   help="anchor scales (side 16 x S)")
    p.add_argument("--scale", type=int, metavar="PIXELS", help="short side of the images")
    p.add_argument("--max-size", type=int, metavar="PIXELS", help="cap on the long side")
    ohem = p.add_mutually_exclusive_group()
    ohem.add_argument("--ohem", dest="ohem", action="store_true", default=None,
                      help="with online hard example mining")
    ohem.add_argument("--no-ohem", dest="ohem", action="store_false")
    p.add_argument("--iters", type=int, metavar="N", help="solver max_iter")
    p.add_argument("--stepsize", type=int, metavar="N", help="solver stepsize")
    p.add_argument("--base-lr", type=float, metavar="LR", help="solver base_lr")
    p.add_argument("--iter-size", type=int, metavar="N", help="solver iter_size")
    p.add_argument("--display", type=int, metavar="N", help="solver display interval")
    p.add_argument("--data-param", type=_data_param, action="append", default=[],
                   metavar="KEY=VALUE", help="extra param_str key of the data layer "
                                             "(repeatable)")
    p.set_defaults(func=_cmd_prototxt)

    p = subparsers.add_parser(
        "check", help="check prototxts for what would fail at train time; count parameters",
        description="Check Faster R-CNN prototxts statically (Python layers, param_str, "
                    "num_classes, anchors, shared weights, RoI pooling scale) and report "
                    "their parameter count and size.")
    p.add_argument("nets", nargs="+", metavar="NET.prototxt")
    p.add_argument("--phase", default="auto", type=str.upper, choices=("AUTO", "TRAIN", "TEST"),
                   help="the phase whose include/exclude rules apply (auto: TRAIN when the net "
                        "has a loss)")
    p.add_argument("--no-imports", dest="imports", action="store_false",
                   help="do not import the Python layers' modules")
    p.add_argument("--input-size", type=_size, default=(600, 1000), metavar="HxW",
                   help="image size a Python data layer gives (default 600x1000)")
    p.add_argument("-v", "--verbose", action="store_true", help="list each layer's parameters")
    p.set_defaults(func=_cmd_check)


_OVERRIDES = ("num_classes", "anchors", "ratios", "scales", "scale", "max_size", "ohem",
              "iters", "stepsize", "base_lr", "iter_size", "display", "data_param", "net_dir")


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    from frcnn.nets.variants import ANCHOR_PRESETS

    changes: dict[str, Any] = {}
    if args.anchors and (args.ratios or args.scales):
        raise ValueError("give --anchors or --ratios/--scales, not both")
    if args.anchors:
        changes["ratios"], changes["scales"] = ANCHOR_PRESETS[args.anchors]
    for key in ("ratios", "scales"):
        values = getattr(args, key)
        if values:
            changes[key] = tuple(int(v) if float(v).is_integer() else v for v in values)
    simple = {"num_classes": "num_classes", "scale": "scale", "max_size": "max_size",
              "ohem": "ohem", "iters": "max_iter", "stepsize": "stepsize",
              "base_lr": "base_lr", "iter_size": "iter_size", "display": "display"}
    for arg, key in simple.items():
        value = getattr(args, arg)
        if value is not None:
            changes[key] = value
    if args.data_param:
        changes["data_params"] = tuple(args.data_param)
    return changes


def _cmd_prototxt(args: argparse.Namespace) -> int:
    from frcnn.nets import checker, generate
    from frcnn.nets.variants import PRESETS, preset

    if args.list:
        for variant in PRESETS.values():
            print(generate.describe(variant))
            print()
        return 0
    if args.all:
        given = [k for k in _OVERRIDES if getattr(args, k) not in (None, [])]
        if given:
            raise ValueError(f"--all writes the presets as they are; options "
                             f"{', '.join('--' + k.replace('_', '-') for k in given)} need "
                             f"--variant")
        out = args.out or "prototxts"
        written = [(v, f"{out.rstrip('/')}/{name}") for name, v in PRESETS.items()]
        generate.write_presets(out)
    else:
        if not args.out:
            raise ValueError("--variant needs --out DIR")
        variant = preset(args.variant)
        changes = _changes(args)
        if changes:
            variant = variant.replace(**changes)
        generate.write(variant, args.out, net_dir=args.net_dir)
        written = [(variant, args.out)]
    for variant, folder in written:
        print(f"{folder}/: {', '.join(generate.FILES)}")
        print(f"  {variant.summary()}")
        report = checker.check_file(f"{folder}/test.prototxt", imports=False)
        print(f"  {report.params_line()}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from frcnn.nets import checker

    status = 0
    for i, path in enumerate(args.nets):
        report = checker.check_file(path, phase=args.phase, imports=args.imports,
                                    input_size=args.input_size)
        if i:
            print()
        print(report.format(verbose=args.verbose))
        if not report.ok:
            status = 1
    return status
