"""``frcnn train``: generate the run's nets, build the roidb, train with snapshots.

Two ways in:

- ``--net VARIANT`` (default): the project's generated nets for the dataset's classes;
- ``--solver SOLVER.prototxt``: py-faster-rcnn's ``tools/train_net.py`` workflow, any
  solver and its own train net, unchanged (``run_solver_train``).  The train net's
  RoIDataLayer decides the data: three tops end to end, six tops Fast R-CNN from the
  ``--proposals`` file.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Sequence

from frcnn import config
from frcnn.app.runs import (dataset_meta, install_cfg, merged_cfg, prepare_out_dir,
                            train_and_record,
                            write_run_info)


DEFAULT_NET = "squeezenet/faster_rcnn_end2end"


@dataclass
class TrainRequest:
    net: str | None                            # a variant name (default DEFAULT_NET)
    dataset: str                               # a registered name or a VOC-format folder
    iters: int | None                          # None: the solver's max_iter (--solver only)
    out: str
    solver: str | None = None                  # a solver.prototxt with its own train net
    proposals: str | None = None               # precomputed proposals (Fast R-CNN nets)
    root: str | None = None                    # folder of a registered dataset
    split: str | None = None                   # of a folder given by path (trainval)
    images: str | None = None                  # image folder of a COCO .json dataset
    classes: Sequence[str] | None = None       # the class list (None: the folder's own)
    weights: str | None = None
    resume: str | None = None                  # a .solverstate, or "auto" (latest complete)
    cfg_file: str | None = None
    set_pairs: Sequence[str] = ()
    base_lr: float | None = None
    stepsize: int | None = None                # default: 3/4 of iters
    iter_size: int | None = None
    clip_gradients: float | None = None        # solver clip_gradients (L2 norm cap)
    solver_type: str | None = None             # variants.SOLVER_TYPES; None: SGD
    ratios: Sequence[float] | None = None
    scales: Sequence[float] | None = None
    trunk_dropout: float | None = None         # None: the backbone's own (drop9 0.5)
    trunk_filler: str | None = None            # None: the backbone's own ("xavier")
    trunk_norm: str | None = None              # None: the backbone's own ("none")
    snapshot_iters: int | None = None          # default: cfg TRAIN.SNAPSHOT_ITERS
    display: int = 20
    force: bool = False
    skip_bad: bool = False
    extra_meta: dict = field(default_factory=dict)


def run_train(req: TrainRequest) -> str:
    """Train; return the final snapshot's path."""
    from frcnn.data.datasets import get_dataset
    from frcnn.data.training_set import build_roidb, check_mode
    from frcnn.nets import generate, variants
    from frcnn.caffe_files import write_solver
    from frcnn.train import TrainOptions

    if req.solver:
        if req.net:
            raise ValueError("give either --net (a variant) or --solver (a solver with its own "
                             "train net), not both")
        from frcnn.app.solver_training import run_solver_train

        return run_solver_train(req)
    if req.iters is None or req.iters < 1:
        raise ValueError(f"--iters must be >= 1, got {req.iters}")
    if req.solver_type and req.solver_type not in variants.SOLVER_TYPES:
        raise ValueError(f"--solver-type must be one of {variants.SOLVER_TYPES}, got "
                         f"{req.solver_type!r}")
    if req.proposals:
        raise ValueError("--proposals is for Fast R-CNN train nets (a RoIDataLayer with six "
                         "tops) given with --solver; the generated variants are end to end")
    req.net = req.net or DEFAULT_NET
    variant = variants.preset(req.net)
    dataset = get_dataset(req.dataset, root=req.root, split=req.split, images=req.images,
                          classes=req.classes)
    out = prepare_out_dir(req.out, req.force, resume=bool(req.resume))
    changes = {"num_classes": dataset.num_classes, "max_iter": req.iters,
               "stepsize": req.stepsize or max(1, int(req.iters * 0.75)),
               "display": req.display}
    for key in ("base_lr", "iter_size", "ratios", "scales", "trunk_dropout", "trunk_filler",
                "trunk_norm"):
        value = getattr(req, key)
        if value is not None:
            changes[key] = tuple(value) if key in ("ratios", "scales") else value
    variant = variant.replace(**changes)

    # cfg: defaults <- the variant's own file <- --cfg <- --set; the image scale of the
    # generated nets then follows the cfg
    net_dir = out / "net"
    generate.write(variant, net_dir, net_dir=str(net_dir))
    c = merged_cfg([net_dir / "config.yml"], req.cfg_file, req.set_pairs)
    variant = variant.replace(scale=int(c.TRAIN.SCALES[0]), max_size=int(c.TRAIN.MAX_SIZE))
    generate.write(variant, net_dir, net_dir=str(net_dir))  # the same cfg, its scale
    install_cfg(c)
    if variant.ohem and c.TRAIN.BATCH_SIZE != -1:
        print(f"[train] warning: an OHEM net with TRAIN.BATCH_SIZE {c.TRAIN.BATCH_SIZE}: "
              f"ProposalTargetLayer samples before the hard RoIs are mined (the usual "
              f"setting is -1, every RoI)", flush=True)
    config.write_cfg(str(out / "cfg.yml"), c)

    print(f"[train] {variant.summary()}", flush=True)
    print(f"[train] dataset {dataset.name} ({dataset.root}, split {dataset.split}), classes "
          f"{list(dataset.classes[1:])}", flush=True)
    check_mode(False, int(c.TRAIN.IMS_PER_BATCH), False, f"{req.net}'s data layer", 3)
    roidb = build_roidb(dataset.load(skip_bad=req.skip_bad), dataset.num_classes, False,
                        flip=bool(c.TRAIN.USE_FLIPPED),
                        keep_empty=bool(c.TRAIN.USE_EMPTY_IMAGES)).roidb
    info = {"net": req.net, "variant": variant.summary(), "dataset": dataset.name,
            "dataset_root": str(dataset.root), "classes": list(dataset.classes),
            "iters": req.iters, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_run_info(out, info)
    meta = {"classes": list(dataset.classes), "net": req.net,
            "test_net": os.path.relpath(net_dir / "test.prototxt", out),
            "cfg_file": "cfg.yml", **dataset_meta(dataset), **req.extra_meta}
    options = TrainOptions(
        solver=str(net_dir / "solver.prototxt"), output_dir=str(out), max_iters=req.iters,
        weights=req.weights, resume=req.resume,
        snapshot_iters=req.snapshot_iters if req.snapshot_iters is not None
        else int(c.TRAIN.SNAPSHOT_ITERS),
        display=req.display, prefix=variant.snapshot_prefix, seed=int(c.RNG_SEED),
        fold_bbox=bool(c.TRAIN.BBOX_NORMALIZE_TARGETS),
        means=tuple(c.TRAIN.BBOX_NORMALIZE_MEANS), stds=tuple(c.TRAIN.BBOX_NORMALIZE_STDS),
        extra_meta=meta)
    # the solver's state snapshots go under state/
    overrides: dict = {"snapshot_prefix": str(out / "state" / variant.snapshot_prefix)}
    if req.clip_gradients:
        overrides["clip_gradients"] = float(req.clip_gradients)
    if req.solver_type:
        overrides["type"] = req.solver_type
    write_solver(options.solver, options.solver, overrides)
    model = train_and_record(options, roidb, out, info)
    return model

