"""``frcnn train``, ``frcnn test``, ``frcnn detect``, ``frcnn proposals`` and ``frcnn demo``."""
from __future__ import annotations

import argparse
from typing import Any

from frcnn import devices


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like '0.5,1,2', got {text!r}")
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a .caffemodel, or an `frcnn export` folder")
    p.add_argument("--backend", default="auto",
                   choices=("auto", "caffe", "onnxruntime", "opencv", "openvino",
                            "openvino-native"),
                   help="what runs the model (auto: caffe for a caffemodel, onnxruntime for an "
                        "export folder; opencv needs OpenCV 4.x and an export with "
                        "caffe-deploy; openvino runs an export's ONNX graphs with this "
                        "package's proposals, openvino-native its one OpenVINO model with "
                        "OpenVINO's Proposal: export with --format openvino)")
    p.add_argument("--device", default="CPU",
                   help="OpenVINO's device for --backend openvino (CPU, GPU, NPU, AUTO)")
    p.add_argument("--precision", default="float", choices=("float", "int8"),
                   help="int8: an export's INT8 graphs (onnxruntime and openvino backends; "
                        "export with --int8)")
    p.add_argument("--net", help="test.prototxt or a variant name (default: the one the "
                                 "model's .frcnn.json names)")
    p.add_argument("--cfg", dest="cfg_file", help="YAML config merged over the model's")
    p.add_argument("--set", dest="set_pairs", nargs="+", default=[], metavar="KEY VALUE",
                   help="config overrides, e.g. --set TEST.NMS 0.4")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--unnormalize", dest="unnormalize", action="store_true", default=None,
                      help="bbox_pred is normalised (a model from plain `caffe train`)")
    norm.add_argument("--no-unnormalize", dest="unnormalize", action="store_false",
                      help="bbox_pred gives plain deltas (normalisation folded in)")


def class_list(text: str) -> tuple[str, ...] | None:
    """``--classes``: names, comma-separated, or a file with one a line ('' : None)."""
    from frcnn.data.datasets import parse_classes

    try:
        return parse_classes(text)
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_split_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", help="the ImageSets/Main list of a dataset given by path "
                                   "(default trainval); a registered name fixes its own")


def add_classes_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classes", type=class_list, metavar="A,B,C|FILE",
                   help="the dataset's class list, in the model's output order, "
                        "comma-separated or a file with one name a line (default: the "
                        "folder's classes.txt, VOC's 20 for a PASCAL VOC devkit folder, "
                        "else the names in its annotations, sorted)")


def register(subparsers: Any) -> None:
    from frcnn.nets import variants

    p = subparsers.add_parser("train", help="train a Faster R-CNN net on a dataset")
    net = p.add_mutually_exclusive_group()
    net.add_argument("--net", help="variant (see `frcnn prototxt --list`; default "
                                   "squeezenet/faster_rcnn_end2end)")
    net.add_argument("--solver", help="a solver.prototxt whose own train net is trained "
                                      "unchanged (py-faster-rcnn's tools/train_net.py)")
    p.add_argument("--dataset", "--imdb", dest="dataset", default="synth_train",
                   help="registered name (synth_train, voc_2007_trainval, ...), VOC folder "
                        "or COCO instances_<split>.json")
    p.add_argument("--root", help="folder of a registered dataset")
    p.add_argument("--images", metavar="DIR", help="image folder of a COCO .json dataset "
                                                   "(default: ROOT/<split> beside ROOT/"
                                                   "annotations/, else ROOT, else the "
                                                   "json's folder)")
    p.add_argument("--proposals", help="precomputed proposals of the dataset, for a Fast "
                                       "R-CNN train net (.pkl as py-faster-rcnn's "
                                       "rpn_generate writes it, or .json)")
    add_split_argument(p)
    add_classes_argument(p)
    p.add_argument("--iters", type=int, help="iterations (required with --net; default with "
                                             "--solver: its max_iter)")
    p.add_argument("--out", required=True, help="run folder (snapshots, nets, cfg)")
    p.add_argument("--weights", help="initial weights, e.g. squeezenet_v1.1.caffemodel")
    p.add_argument("--resume", metavar="STATE|auto",
                   help="continue a run: a .solverstate from its state/ folder, or 'auto' "
                        "for the latest complete snapshot in --out (none yet: start afresh); "
                        "give the run's other arguments again")
    p.add_argument("--cfg", dest="cfg_file", help="YAML config file")
    p.add_argument("--set", dest="set_pairs", nargs="+", default=[], metavar="KEY VALUE")
    p.add_argument("--base-lr", type=float)
    p.add_argument("--stepsize", type=int, help="lr step (default 3/4 of --iters)")
    p.add_argument("--iter-size", type=int)
    p.add_argument("--clip-gradients", type=float, help="cap on the gradient's L2 norm")
    p.add_argument("--trunk-dropout", type=float, metavar="RATIO",
                   help="dropout on the backbone's output (SqueezeNet drop9; default its 0.5; "
                        "0 leaves it out)")
    p.add_argument("--solver-type", choices=variants.SOLVER_TYPES,
                   help="Caffe's solver (default SGD; with Adam base_lr is its step, e.g. "
                        "0.001)")
    p.add_argument("--trunk-filler", choices=variants.TRUNK_FILLERS,
                   help="weight filler of the backbone's convolutions (default xavier; msra "
                        "keeps the signal's scale through ReLUs when training from scratch)")
    p.add_argument("--trunk-norm", choices=variants.TRUNK_NORMS,
                   help="instance normalisation (MVN + Scale) in the SqueezeNet trunk: "
                        "after conv1 and each squeeze1x1 (squeeze) or every convolution "
                        "(all); default none")
    p.add_argument("--ratios", type=_floats)
    p.add_argument("--scales", type=_floats)
    p.add_argument("--snapshot-iters", type=int)
    p.add_argument("--display", type=int, default=20)
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad images/objects with a warning instead of stopping")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    devices.add_argument(p)
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser("test", help="evaluate a model on a dataset (VOC mAP)")
    _model_args(p)
    p.add_argument("--dataset", "--imdb", dest="dataset", default="synth_test",
                   help="registered name, VOC folder or COCO .json (adds the COCO metrics)")
    p.add_argument("--root")
    p.add_argument("--images", metavar="DIR", help="image folder of a COCO .json dataset")
    add_split_argument(p)
    add_classes_argument(p)
    p.add_argument("--proposals", help="the dataset's proposals, for a Fast R-CNN test net "
                                       "(rois as an input)")
    p.add_argument("--out", help="results folder (default: beside the model, "
                                 "DIR/NAME_test_<dataset> for DIR/NAME.caffemodel, "
                                 "EXPORT/test_<dataset> for an export folder); a folder an "
                                 "earlier `frcnn test` made is replaced")
    p.add_argument("--max-images", type=int, default=0)
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out that `frcnn test` did not make")
    devices.add_argument(p)
    p.set_defaults(func=_cmd_test)

    p = subparsers.add_parser("detect", help="detect objects in images")
    _model_args(p)
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files; with --jsonl also folders and patterns ('*.jpg')")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="a list file of image paths, one a line (with --jsonl)")
    p.add_argument("--jsonl", metavar="FILE",
                   help="stream one JSON line per image to FILE (no pictures drawn); an "
                        "unreadable image is an error line, not the end of the run")
    p.add_argument("--resume", action="store_true",
                   help="with --jsonl: skip the images FILE already holds")
    p.add_argument("--out", help="output folder (default: DIR/NAME_detect for "
                                 "DIR/NAME.caffemodel, EXPORT/detect for an export folder); a "
                                 "folder an earlier `frcnn detect` made is replaced")
    p.add_argument("--thresh", type=float, default=0.5, help="score threshold to report/draw")
    p.add_argument("--classes", help="class names without background, comma-separated "
                                     "(default: from the model)")
    devices.add_argument(p)
    p.set_defaults(func=_cmd_detect)

    p = subparsers.add_parser("proposals", help="write an RPN's proposals for every image of "
                                                "a dataset (for Fast R-CNN training/testing)")
    p.add_argument("--model", required=True, help="the RPN's .caffemodel")
    p.add_argument("--net", required=True, help="an RPN test net: inputs data and im_info, "
                                                "output rois (and scores), e.g. "
                                                "py-faster-rcnn's rpn_test.pt")
    p.add_argument("--dataset", "--imdb", dest="dataset", required=True)
    p.add_argument("--root")
    add_split_argument(p)
    add_classes_argument(p)
    p.add_argument("--out", required=True, help="FILE.pkl (py-faster-rcnn's form) or "
                                                "FILE.json")
    p.add_argument("--cfg", dest="cfg_file", help="YAML config merged over the defaults")
    p.add_argument("--set", dest="set_pairs", nargs="+", default=[], metavar="KEY VALUE",
                   help="config overrides (default here, as py-faster-rcnn's rpn_generate: "
                        "TEST.RPN_PRE_NMS_TOP_N -1, TEST.RPN_POST_NMS_TOP_N 2000)")
    p.add_argument("--max-images", type=int, default=0)
    devices.add_argument(p)
    p.set_defaults(func=_cmd_proposals)

    p = subparsers.add_parser("export", help="export a model for runtimes without Caffe "
                                             "(ONNX graphs, a Caffe net with a native "
                                             "Proposal layer)")
    p.add_argument("--model", required=True, help="the .caffemodel")
    p.add_argument("--net", help="its test.prototxt (default: the one the model's sidecar "
                                 "names)")
    p.add_argument("--format", default="onnx,caffe-deploy",
                   help="onnx, caffe-deploy, openvino (one OpenVINO model with its native "
                        "Proposal; also writes the onnx graphs), comma-separated (default "
                        "onnx,caffe-deploy)")
    p.add_argument("--out", required=True, help="the export folder")
    p.add_argument("--int8", action="store_true",
                   help="also INT8 graphs (onnxruntime static quantization), calibrated on "
                        "--calibration images")
    p.add_argument("--calibration", metavar="DATASET",
                   help="the calibration images for --int8: a dataset of the model's classes "
                        "(name, VOC folder or COCO .json)")
    p.add_argument("--calibration-root", metavar="DIR", help="folder of a registered "
                                                               "calibration dataset")
    p.add_argument("--calibration-images", type=int, default=32, metavar="N",
                   help="how many of its images (default 32)")
    p.add_argument("--cfg", dest="cfg_file", help="YAML config merged over the model's (the "
                                                  "TEST settings go into the manifest)")
    p.add_argument("--set", dest="set_pairs", nargs="+", default=[], metavar="KEY VALUE")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the ONNX-against-Caffe check on a test image")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--unnormalize", dest="unnormalize", action="store_true", default=None,
                      help="bbox_pred is normalised (fold it into the export)")
    norm.add_argument("--no-unnormalize", dest="unnormalize", action="store_false")
    p.set_defaults(func=_cmd_export)

    p = subparsers.add_parser("demo", help="the main job: synthetic data, train, test, detect")
    p.add_argument("--out", default="output/demo")
    p.add_argument("--iters", type=int, help="training iterations (default: the recipe's)")
    p.add_argument("--ohem", action="store_true", help="train the OHEM net")
    p.add_argument("--num-train", type=int, default=300)
    p.add_argument("--num-test", type=int, default=100)
    p.add_argument("--seed", type=int, default=3,
                   help="seeds the dataset and the training (default 3)")
    p.add_argument("--force", action="store_true", help="regenerate the dataset")
    p.add_argument("--set", dest="set_pairs", nargs="+", default=[], metavar="KEY VALUE",
                   help="config overrides on top of the recipe, e.g. --set "
                        "TRAIN.USE_EMPTY_IMAGES True")
    p.add_argument("--scales", type=_floats,
                   help="anchor scales instead of the recipe's (x16 px), e.g. 2,4,8")
    p.add_argument("--recipe", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="change the recipe (frcnn.app.demo.DemoRecipe), e.g. --recipe "
                        "iters=2000 trunk_filler=msra roi_batch=32")
    devices.add_argument(p)
    p.set_defaults(func=_cmd_demo)


def _set_pairs(args: argparse.Namespace) -> tuple[str, ...]:
    pairs = tuple(args.set_pairs)
    if len(pairs) % 2:
        raise ValueError(f"--set takes KEY VALUE pairs, got {list(pairs)}")
    return pairs


def resume_command(argv: list[str]) -> str:
    """``frcnn train`` arguments with any --resume / --force replaced by ``--resume auto``."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not (arg.startswith("--resume=") or arg == "--force"):
            kept.append(arg)
    return shlex.join(["frcnn", *kept, "--resume", "auto"])


def _cmd_train(args: argparse.Namespace) -> int:
    import sys

    from frcnn.train import TrainingInterrupted

    argv = sys.argv[1:] if "train" in sys.argv[1:] else None
    how = (f"resume with: {resume_command(argv)}" if argv
           else "resume with the same command and --resume auto")
    try:
        _train(args)
    except TrainingInterrupted as e:
        print(f"frcnn train: {e}; {how}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"frcnn train: interrupted before training started or while stopping; "
              f"{how}", file=sys.stderr, flush=True)
        return 130
    return 0


def _train(args: argparse.Namespace) -> None:
    from frcnn.app.training import TrainRequest, run_train

    run_train(TrainRequest(
        net=args.net, solver=args.solver, proposals=args.proposals,
        dataset=args.dataset, root=args.root, split=args.split, images=args.images,
        classes=args.classes,
        iters=args.iters,
        out=args.out,
        weights=args.weights, resume=args.resume, cfg_file=args.cfg_file,
        set_pairs=_set_pairs(args), base_lr=args.base_lr, stepsize=args.stepsize,
        iter_size=args.iter_size, clip_gradients=args.clip_gradients,
        solver_type=args.solver_type, ratios=args.ratios,
        scales=args.scales, trunk_dropout=args.trunk_dropout, trunk_filler=args.trunk_filler,
        trunk_norm=args.trunk_norm,
        snapshot_iters=args.snapshot_iters, display=args.display, force=args.force,
        skip_bad=args.skip_bad))


def _cmd_test(args: argparse.Namespace) -> int:
    from frcnn.app.testing import EvalRequest, run_test

    run_test(EvalRequest(model=args.model, net=args.net, cfg_file=args.cfg_file,
                         set_pairs=_set_pairs(args), unnormalize=args.unnormalize,
                         backend=args.backend, device=args.device,
                         precision=args.precision,
                         dataset=args.dataset, root=args.root, images=args.images,
                         split=args.split, classes=args.classes, out=args.out,
                         force=args.force, max_images=args.max_images,
                         proposals=args.proposals))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from frcnn.app.export import ExportRequest, run_export

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    run_export(ExportRequest(model=args.model, out=args.out, net=args.net, formats=formats,
                             int8=args.int8, calibration=args.calibration,
                             calibration_root=args.calibration_root,
                             calibration_images=args.calibration_images,
                             cfg_file=args.cfg_file, set_pairs=_set_pairs(args),
                             unnormalize=args.unnormalize, check=args.check))
    return 0


def _cmd_proposals(args: argparse.Namespace) -> int:
    from frcnn.app.proposals import ProposalsRequest, run_proposals

    run_proposals(ProposalsRequest(model=args.model, net=args.net, dataset=args.dataset,
                                   root=args.root, split=args.split,
                                   classes=args.classes, out=args.out,
                                   cfg_file=args.cfg_file,
                                   set_pairs=_set_pairs(args), max_images=args.max_images))
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from frcnn.app.testing import DetectRequest, run_detect

    from frcnn.app.testing import run_detect_stream

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    req = DetectRequest(model=args.model, net=args.net, cfg_file=args.cfg_file,
                        set_pairs=_set_pairs(args), unnormalize=args.unnormalize,
                        backend=args.backend, device=args.device, precision=args.precision,
                        images=args.images, out=args.out, thresh=args.thresh,
                        classes=classes, from_file=args.from_file, jsonl=args.jsonl,
                        resume=args.resume)
    if args.jsonl:
        run_detect_stream(req)
    else:
        if args.from_file or args.resume:
            raise ValueError("--from and --resume go with --jsonl FILE")
        run_detect(req)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from frcnn.app.demo import DEMO, run_demo

    run_demo(args.out, iters=args.iters, ohem=args.ohem, force=args.force,
             num_train=args.num_train, num_test=args.num_test, seed=args.seed,
             set_pairs=_set_pairs(args), scales=args.scales, recipe=DEMO.replace(args.recipe))
    return 0
