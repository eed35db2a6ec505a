"""The pieces every command shares: configuration merging, run folders, net resolution.

A training run folder (``frcnn train --out DIR``) holds::

    DIR/net/{train,test,solver}.prototxt, config.yml   generated for this run
    DIR/cfg.yml                                        the whole merged configuration
    DIR/run.json                                       variant, dataset, classes
    DIR/<prefix>_iter_<N>.caffemodel (+ .frcnn.json)   deployable snapshots
    DIR/state/                                         solver + train states for --resume
    DIR/loss.csv, DIR/loss.png                         the loss history (frcnn.train_history)

A snapshot's sidecar names the run's test net, cfg and classes (relative to the model), so
``frcnn test --model DIR/..caffemodel`` and ``frcnn detect`` need nothing else.

``frcnn test`` and ``frcnn detect`` write derived, cheap output: by default into a folder
beside the model (``default_derived_out``), which ``derived_out_dir`` marks
(``.frcnn-output``) and replaces on the next run; a training run folder is never replaced
(``prepare_out_dir``).
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from easydict import EasyDict

from frcnn import config
from frcnn.caffe_files import read_sidecar


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


def dataset_meta(dataset) -> dict:
    """Sidecar keys of a COCO dataset: the COCO id of each class after the background."""
    return {"category_ids": list(dataset.category_ids)} if dataset.category_ids else {}


def install_cfg(c: EasyDict) -> None:
    """Make ``c`` the global cfg (what the Caffe layers read at setup).  A GPU selected with
    ``--gpu`` becomes its GPU_ID (the NMS device), as py-faster-rcnn's ``--gpu`` does."""
    from frcnn import devices

    config.cfg.clear()
    config.cfg.update(copy.deepcopy(c))
    if devices.selected() is not None:
        config.cfg.GPU_ID = devices.selected()


def prepare_out_dir(out: str | Path, force: bool, resume: bool = False) -> Path:
    """The output folder; an existing non-empty one needs --force (or --resume).  OSError
    naming it when it cannot be made or written (read-only, no permission, a file in the
    way), before any work starts."""
    from frcnn.fileio import check_writable

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"output folder {path} exists and is not a folder")
    if path.exists() and any(path.iterdir()) and not (force or resume):
        raise FileExistsError(f"output folder {path} exists and is not empty: pass --force to "
                              f"write into it (files may be overwritten) or choose another")
    return check_writable(path)


OUTPUT_MARKER = ".frcnn-output"  # in a folder `frcnn test` / `frcnn detect` made: {"command"}


def default_derived_out(command: str, model: str | Path, dataset: str | None = None) -> Path:
    """The default output folder of ``frcnn test`` / ``frcnn detect`` for a model.

    A caffemodel ``DIR/NAME.caffemodel``: ``DIR/NAME_test_<dataset>`` and
    ``DIR/NAME_detect``; an export folder ``EXPORT``: ``EXPORT/test_<dataset>`` and
    ``EXPORT/detect``.  ``<dataset>`` is the dataset's name, or for a path its last part
    (a COCO file without ``.json``), with characters other than letters, digits and
    ``._-`` as ``_``.  FileNotFoundError when the model does not exist (nothing is made).
    """
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {model}")
    leaf = command
    if dataset is not None:
        name = Path(str(dataset).rstrip("/\\")).name or str(dataset)
        if name.lower().endswith(".json"):
            name = name[:-len(".json")]
        leaf = f"{command}_{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('._') or 'dataset'}"
    if path.is_dir():
        return path / leaf
    return path.parent / f"{path.stem}_{leaf}"


def derived_out_dir(out: str | Path, command: str, force: bool = False) -> Path:
    """The output folder of a command whose output is derived (``frcnn test``, ``detect``).

    A missing or empty folder is made and marked as this command's (``OUTPUT_MARKER``); a
    folder this command marked before is emptied and reused (re-running just works); any
    other non-empty folder needs ``force`` and is then written into as it is (files of the
    same name are overwritten, nothing else is deleted, and it is not marked).
    """
    path = Path(out)
    marker = path / OUTPUT_MARKER
    if path.is_dir() and _marked_by(marker) == command:
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not path.is_dir():
            raise FileExistsError(f"output folder {path} exists and is not a folder")
        if not force:
            raise FileExistsError(
                f"output folder {path} exists, is not empty and was not made by `frcnn "
                f"{command}`: pass --force to write into it (files may be overwritten) or "
                f"choose another")
        return path
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"command": command}) + "\n")
    return path


def _marked_by(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def model_context(model: str | Path) -> dict[str, Any]:
    """What a model's sidecar says, with its paths made absolute ({} without a sidecar).
    ValueError naming the model when its size or sha256 is not the sidecar's (a truncated or
    edited file: frcnn.model_files.check_model_record)."""
    from frcnn.model_files import check_model_record

    meta = read_sidecar(model) or {}
    if meta and Path(model).is_file():
        check_model_record(model, meta)
    base = Path(model).resolve().parent
    for key in ("test_net", "cfg_file"):
        if meta.get(key):
            meta[key] = str((base / meta[key]).resolve())
    return meta


def write_run_info(out: Path, info: dict) -> None:
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def train_and_record(options: Any, roidb: list[dict] | None, out: Path, info: dict) -> str:
    """Run a ``frcnn.train.Trainer`` to the end; record the final model and the speed in
    ``run.json`` (``info`` updated); return the final snapshot's path."""
    from frcnn.train import Trainer

    trainer = Trainer(options, roidb)
    first_iter = trainer.solver.iter
    if trainer.resumed_from:
        info["resumed_from"] = str(trainer.resumed_from)
    start = time.time()
    model = trainer.train()
    seconds = time.time() - start
    info.update(model=model, train_seconds=round(seconds, 1), seconds_per_iter=round(
        seconds / max(trainer.solver.iter - first_iter, 1), 4))
    write_run_info(out, info)
    print(f"[train] done in {seconds:.0f}s: {model}", flush=True)
    return model
