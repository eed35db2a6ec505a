"""``frcnn train --solver SOLVER.prototxt``: py-faster-rcnn's ``tools/train_net.py`` workflow.

    frcnn train --solver models/pascal_voc/ZF/faster_rcnn_end2end/solver.prototxt \\
        --weights data/imagenet_models/ZF.v2.caffemodel --imdb voc_2007_trainval \\
        --cfg experiments/cfgs/faster_rcnn_end2end.yml --iters 70000 --out output/zf

The solver's own train net is used unchanged (its path is resolved as Caffe does, from the
current directory, else from the solver's folder).  What the driver adds: the dataset is
handed to the net's RoIDataLayer with ``set_roidb`` (so the param_str needs no dataset),
three-top data layers get the end-to-end roidb and six-top ones the Fast R-CNN roidb of the
``--proposals`` file; the net's class count is checked against the dataset before Caffe
builds anything; snapshots fold the bbox normalisation into the layer named ``bbox_pred``
when TRAIN.BBOX_REG and TRAIN.BBOX_NORMALIZE_TARGETS say so (py-faster-rcnn's
convention), with the sidecar; progress lines, NaN stop and resume are the driver's.

The run folder: ``cfg.yml``, ``run.json``, ``net/solver.prototxt`` (the solver with
absolute net paths, max_iter and snapshot_prefix set; test nets dropped: evaluate with
``frcnn test``), the snapshots and ``state/``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frcnn import config
from frcnn.app.runs import (dataset_meta, install_cfg, merged_cfg, prepare_out_dir,
                            train_and_record,
                            write_run_info)

DATA_LAYER = ("roi_data_layer.layer", "RoIDataLayer")


@dataclass(frozen=True)
class SolverNet:
    """What the driver needs to know of a solver and its train net, read without Caffe."""
    solver: Any                    # caffe_pb2.SolverParameter
    train_net: Path | None         # None when the net is inline (net_param)
    data_layer: str                # its name
    data_tops: int
    num_classes: int | None        # from the data layer's param_str


def resolve_net_path(name: str, solver_path: Path) -> Path:
    """A net path of a solver: as Caffe reads it (from the current directory), else from the
    solver's folder; FileNotFoundError naming both."""
    given = Path(name).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given,
                                                      solver_path.parent / given]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise FileNotFoundError(f"solver {solver_path}: its net {name!r} was not found (looked "
                            f"at {', '.join(str(c) for c in candidates)})")


def read_solver_net(solver_path: str | os.PathLike) -> SolverNet:
    """Parse the solver and its train net; find the RoIDataLayer.  Raises ValueError with a
    clear message when the solver names no train net or the net has no RoIDataLayer."""
    from caffe.proto import caffe_pb2

    from frcnn.caffe_files import read_solver, read_text_proto
    from frcnn.layer_params import parse_param_str

    path = Path(solver_path)
    solver = read_solver(path)
    net = caffe_pb2.NetParameter()
    train_net: Path | None = None
    if solver.HasField("train_net_param") or solver.HasField("net_param"):
        net.CopyFrom(solver.train_net_param if solver.HasField("train_net_param")
                     else solver.net_param)
    elif solver.train_net or solver.net:
        train_net = resolve_net_path(solver.train_net or solver.net, path)
        read_text_proto(train_net, net, "train net")
    else:
        raise ValueError(f"solver {path} names no train net ('train_net' or 'net')")
    where = train_net or f"{path} (inline net)"
    for layer in net.layer:
        pp = layer.python_param
        if layer.type == "Python" and (pp.module, pp.layer) == DATA_LAYER:
            params = parse_param_str(pp.param_str, ".".join(DATA_LAYER), layer.name)
            return SolverNet(solver, train_net, layer.name, len(layer.top),
                             params.get("num_classes"))
    raise ValueError(f"train net {where} has no RoIDataLayer (python_param module "
                     f"'roi_data_layer.layer', layer 'RoIDataLayer'): the driver hands the "
                     f"dataset to that layer")


def write_run_solver(sn: SolverNet, dest: Path, max_iter: int, snapshot_prefix: str) -> Path:
    """The solver with absolute net paths, max_iter and snapshot_prefix; without test nets."""
    from frcnn.caffe_files import write_text_proto

    from caffe.proto import caffe_pb2

    solver = caffe_pb2.SolverParameter()
    solver.CopyFrom(sn.solver)
    if sn.train_net is not None:
        solver.ClearField("net")
        solver.train_net = str(sn.train_net)
    for name in ("test_net", "test_net_param", "test_iter", "test_state"):
        solver.ClearField(name)
    solver.ClearField("test_interval")
    solver.max_iter = max_iter
    solver.snapshot_prefix = snapshot_prefix
    solver.snapshot = 0  # the driver snapshots (folded, with sidecars)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return write_text_proto(dest, solver)


def run_solver_train(req) -> str:
    """Train a solver's own net (see the module docstring); return the final snapshot."""
    from frcnn.data.datasets import get_dataset
    from frcnn.data.fast_rcnn import fast_rcnn_params
    from frcnn.data.training_set import build_roidb, check_mode, is_fast_rcnn
    from frcnn.train import TrainOptions

    solver_path = Path(req.solver).expanduser().absolute()
    sn = read_solver_net(solver_path)
    iters = req.iters if req.iters is not None else int(sn.solver.max_iter)
    if iters < 1:
        raise ValueError(f"--iters must be >= 1 (the solver's max_iter is "
                         f"{sn.solver.max_iter}), got {iters}")
    dataset = get_dataset(req.dataset, root=req.root, split=getattr(req, "split", None),
                          images=getattr(req, "images", None),
                          classes=getattr(req, "classes", None))
    if sn.num_classes is not None and sn.num_classes != dataset.num_classes:
        raise ValueError(f"the train net's data layer '{sn.data_layer}' says num_classes "
                         f"{sn.num_classes} but dataset {dataset.name} has "
                         f"{dataset.num_classes} classes with the background "
                         f"({', '.join(dataset.classes[1:])}): edit the net's num_classes "
                         f"and its cls_score / bbox_pred outputs, or pick the matching "
                         f"dataset")
    c = merged_cfg([], req.cfg_file, req.set_pairs)
    fast = is_fast_rcnn(sn.data_tops, bool(c.TRAIN.HAS_RPN))
    check_mode(fast, int(c.TRAIN.IMS_PER_BATCH), bool(req.proposals),
               f"the train net's data layer '{sn.data_layer}'", sn.data_tops)
    out = prepare_out_dir(req.out, req.force, resume=bool(req.resume))
    install_cfg(c)
    config.write_cfg(str(out / "cfg.yml"), c)

    t = c.TRAIN
    means, stds = tuple(t.BBOX_NORMALIZE_MEANS), tuple(t.BBOX_NORMALIZE_STDS)
    built = build_roidb(dataset.load(skip_bad=req.skip_bad), dataset.num_classes, fast,
                        flip=bool(t.USE_FLIPPED), keep_empty=bool(t.USE_EMPTY_IMAGES),
                        proposals=req.proposals, fast_params=fast_rcnn_params(c) if fast else None,
                        normalize=bool(t.BBOX_NORMALIZE_TARGETS), means=means, stds=stds,
                        precomputed=bool(t.BBOX_NORMALIZE_TARGETS_PRECOMPUTED))
    roidb = built.roidb
    if fast and not t.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:  # the data's, per class
        means, stds = tuple(built.means.ravel().tolist()), tuple(built.stds.ravel().tolist())

    # py-faster-rcnn's snapshot names: <snapshot_prefix>[_<SNAPSHOT_INFIX>]_iter_<N>
    prefix = (Path(sn.solver.snapshot_prefix).name or "model") + (
        f"_{t.SNAPSHOT_INFIX}" if t.SNAPSHOT_INFIX else "")
    run_solver = write_run_solver(sn, out / "net" / "solver.prototxt", iters,
                                  str(out / "state" / prefix))
    guess = sn.train_net.parent / "test.prototxt" if sn.train_net else None
    meta: dict[str, Any] = {"classes": list(dataset.classes), "net": f"solver:{solver_path}",
                            "solver": str(solver_path), "cfg_file": "cfg.yml",
                            "train_net": str(sn.train_net) if sn.train_net else None,
                            "mode": "fast_rcnn" if fast else "end2end",
                            **dataset_meta(dataset)}
    if guess is not None and guess.is_file():
        meta["test_net"] = str(guess)  # py-faster-rcnn's layout: test.prototxt beside train
    info = {"solver": str(solver_path), "train_net": meta["train_net"], "mode": meta["mode"],
            "dataset": dataset.name, "dataset_root": str(dataset.root),
            "classes": list(dataset.classes), "iters": iters,
            "proposals": str(req.proposals) if req.proposals else None,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_run_info(out, info)
    print(f"[train] solver {solver_path}: train net {sn.train_net or '(inline)'}, "
          f"{'Fast R-CNN from proposals' if fast else 'end to end'}, {iters} iterations",
          flush=True)
    print(f"[train] dataset {dataset.name} ({dataset.root}, split {dataset.split}), classes "
          f"{list(dataset.classes[1:])}", flush=True)
    options = TrainOptions(
        solver=str(run_solver), output_dir=str(out), max_iters=iters, weights=req.weights,
        resume=req.resume,
        snapshot_iters=req.snapshot_iters if req.snapshot_iters is not None
        else int(t.SNAPSHOT_ITERS),
        display=req.display, prefix=prefix, seed=int(c.RNG_SEED),
        fold_bbox=bool(t.BBOX_REG and t.BBOX_NORMALIZE_TARGETS), means=means, stds=stds,
        extra_meta=meta)
    model = train_and_record(options, roidb, out, info)
    if "test_net" not in meta:
        print(f"[train] evaluate with: frcnn test --model {model} --net TEST.prototxt "
              f"--dataset ...", flush=True)
    return model
