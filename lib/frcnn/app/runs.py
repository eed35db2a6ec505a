"""The pieces every command shares: configuration merging, run folders, net resolution.

A training run folder (``frcnn train --out DIR``) holds::

    DIR/net/{train,test,solver}.prototxt, config.yml   generated for this run
    DIR/cfg.yml                                        the whole merged configuration
    DIR/run.json                                       variant, dataset, classes
    DIR/<prefix>_iter_<N>.caffemodel (+ .frcnn.json)   deployable snapshots
    DIR/state/                                         solver states for --resume

A snapshot's sidecar names the run's test net, cfg and classes (relative to the model), so
``frcnn test --model DIR/..caffemodel`` and ``frcnn detect`` need nothing else.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

from easydict import EasyDict

from frcnn import config
from frcnn.train import read_sidecar


def merged_cfg(base_files: Sequence[str | Path] = (), cfg_file: str | None = None,
               set_pairs: Sequence[str] = ()) -> EasyDict:
    """defaults <- base_files (in order) <- cfg_file <- KEY VALUE pairs; returns a new cfg."""
    c = config.default_config()
    for path in base_files:
        config.cfg_from_file(str(path), c)
    if cfg_file:
        config.cfg_from_file(cfg_file, c)
    if set_pairs:
        config.cfg_from_list(list(set_pairs), c)
    return c


def install_cfg(c: EasyDict) -> None:
    """Make ``c`` the global cfg (what the Caffe layers read at setup)."""
    config.cfg.clear()
    config.cfg.update(copy.deepcopy(c))


def prepare_out_dir(out: str | Path, force: bool, resume: bool = False) -> Path:
    """The output folder; an existing non-empty one needs --force (or --resume)."""
    path = Path(out)
    if path.exists() and any(path.iterdir()) and not (force or resume):
        raise FileExistsError(f"output folder {path} exists and is not empty: pass --force to "
                              f"write into it (files may be overwritten) or choose another")
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_context(model: str | Path) -> dict[str, Any]:
    """What a model's sidecar says, with its paths made absolute ({} without a sidecar)."""
    meta = read_sidecar(model) or {}
    base = Path(model).resolve().parent
    for key in ("test_net", "cfg_file"):
        if meta.get(key):
            meta[key] = str((base / meta[key]).resolve())
    return meta


def write_run_info(out: Path, info: dict) -> None:
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
