"""The ``frcnn`` command line.

Subcommands defined here:
  info     versions, the Caffe build (CPU or CUDA), its Fast R-CNN layers, the GPUs it sees
  config   every configuration key with its default and meaning
  smoke    a short ``caffe train`` through the Python, ROIPooling and SmoothL1Loss layers
Other subcommands live beside the code they drive: each module in ``COMMAND_MODULES`` has a
``register(subparsers)`` that adds its subcommands (and must import nothing heavy at import
time).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from frcnn import devices

# Modules that add subcommands; see the module docstring.
COMMAND_MODULES: tuple[str, ...] = (
    "frcnn.nets.commands",
    "frcnn.data.commands",
    "frcnn.app.commands",
    "frcnn.bench.commands",
)

REQUIRED_CAFFE_LAYERS = ("Python", "ROIPooling", "SmoothL1Loss")


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy

    import frcnn

    print(f"squeezenet-frcnn {frcnn.__version__}")
    print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}")
    try:
        import caffe
    except ImportError as e:
        print(f"caffe: not importable ({e}); run ./install.sh")
        return 1
    layers = set(caffe.layer_type_list())
    missing = [name for name in REQUIRED_CAFFE_LAYERS if name not in layers]
    print(f"caffe {caffe.__version__} at {caffe.__file__}")
    info = Path(caffe.__file__).with_name("_frcnn_build.json")
    if info.exists():
        build = json.loads(info.read_text())
        print(f"caffe build: {build['archive']}, compiled with {build['cflags']} "
              f"(set {build['arch_env']} to change), key {build['key']}")
    print("caffe layers: " + ", ".join(
        f"{name} {'yes' if name in layers else 'MISSING'}" for name in REQUIRED_CAFFE_LAYERS))
    from frcnn import nms

    for line in devices.report():
        print(line)
    print(f"NMS backends: {', '.join(nms.available_backends())}")
    return 1 if missing else 0


def _cmd_config(args: argparse.Namespace) -> int:
    from frcnn import config

    print(config.describe())
    return 0


def _cmd_smoke(args: argparse.Namespace) -> int:
    from frcnn import smoke

    smoke.run(args.out, iters=args.iters, seed=args.seed, gpu=devices.selected())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frcnn", description="SqueezeNet Faster R-CNN (with OHEM) for Caffe")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Caffe's own INFO log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="versions, the Caffe build and its layers")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("config", help="list every configuration key with its default")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("smoke", help="train a tiny net through the project's Caffe layers")
    p.add_argument("--out", default="output/smoke", help="folder for the net, solver and log")
    p.add_argument("--iters", type=int, default=60, help="solver iterations (default 60)")
    p.add_argument("--seed", type=int, default=3)
    devices.add_argument(p)
    p.set_defaults(func=_cmd_smoke)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None and not args.verbose:
        # the command line, before Caffe's glog starts: warnings and errors still show
        os.environ.setdefault("GLOG_minloglevel", "1")
    try:
        if getattr(args, "gpu", None) is not None:
            devices.use_gpu(args.gpu)  # checked before Caffe is asked: its checks abort
        return args.func(args)
    except (RuntimeError, ValueError, OSError) as e:
        print(f"frcnn {args.command}: error: {devices.explain(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
