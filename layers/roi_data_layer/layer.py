"""Data layers under py-faster-rcnn's module name ``roi_data_layer.layer``: RoIDataLayer,
and OHEMDataLayer (defined in ``roi_data_layer.ohem_layer``, exposed here as the seed's
prototxts name it).

The module name is py-faster-rcnn's, so prototxts that say
``python_param { module: 'roi_data_layer.layer' layer: 'RoIDataLayer' }`` load unchanged.

RoIDataLayer: no bottoms; tops (py-faster-rcnn's end-to-end layout)
  data      (1, 3, H, W) float32: BGR minus cfg.PIXEL_MEANS, scaled so the short side is a
            randomly drawn entry of the scales and the long side at most max_size
  im_info   (1, 3) float32: H, W, scale
  gt_boxes  (G, 5) float32: x1 y1 x2 y2 class in scaled-image pixels, G >= 1
Tops are shaped at setup with placeholders ((1, 3, max scale, max_size), (1, 3), (1, 5)) and
reshaped by every forward.  Images come in shuffled epochs (optionally aspect-grouped) from
a numpy Generator; optionally a background thread prepares the next ones.  The layer uses
the TRAIN settings in either phase.

The roidb comes either from Python, ``net.layers[0].set_roidb(roidb)`` (py-faster-rcnn's
way; see frcnn.data.roidb), or from the param_str, which lets plain ``caffe train`` run the
net (the layer loads the dataset at setup, flipping per cfg)::

    'num_classes': 4
    'dataset': 'synth_train'      # or voc_2007_trainval, or the path of a VOC-format folder
    'root': 'data/synth'

param_str keys (frcnn.layer_params; unset ones come from cfg):
  num_classes   classes with background; must match the dataset's class list
  dataset root split classes use_difficult skip_bad   which data (frcnn.data.datasets)
  cfg           a YAML config merged into the global cfg first (for ``caffe train``)
  scales max_size flip aspect_grouping seed prefetch   override TRAIN.SCALES,
                TRAIN.MAX_SIZE, TRAIN.USE_FLIPPED, TRAIN.ASPECT_GROUPING, RNG_SEED,
                TRAIN.USE_PREFETCH
cfg keys read at setup: those above and PIXEL_MEANS, TRAIN.IMS_PER_BATCH (must be 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import caffe
from frcnn.caffe_layer import check_bottoms, check_tops, layer_params, reports_errors
from frcnn.config import cfg, cfg_from_file
from frcnn.data.datasets import get_dataset, parse_classes
from frcnn.data.minibatch import BlobSettings, MinibatchSource
from frcnn.data.prefetch import Prefetcher
from frcnn.data.roidb import check_roidb
from roi_data_layer.ohem_layer import OHEMDataLayer  # noqa: F401  (the seed's module name)

_TOPS = ("data", "im_info", "gt_boxes")
# param_str keys that only mean something together with 'dataset', and their unset values
_DATASET_ONLY = {"root": "", "split": "", "classes": "", "use_difficult": False,
                 "skip_bad": False, "flip": None}


class RoIDataLayer(caffe.Layer):
    """Training images and their gt boxes; see the module docstring."""

    @reports_errors
    def setup(self, bottom, top):
        check_bottoms(self, bottom, (0,), "none")
        check_tops(self, top, (3,), ", ".join(_TOPS))
        p = layer_params(self)
        if p["cfg"]:
            cfg_from_file(str(Path(p["cfg"]).expanduser().absolute()))
        if cfg.TRAIN.IMS_PER_BATCH != 1:
            raise ValueError(f"end-to-end training takes one image per minibatch; "
                             f"cfg TRAIN.IMS_PER_BATCH is {cfg.TRAIN.IMS_PER_BATCH}")
        self._num_classes = p["num_classes"]
        if self._num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got "
                             f"{self._num_classes}")

        def pick(key: str, default: Any) -> Any:
            return default if p[key] is None else p[key]

        self._settings = BlobSettings(scales=tuple(pick("scales", cfg.TRAIN.SCALES)),
                                      max_size=pick("max_size", cfg.TRAIN.MAX_SIZE),
                                      pixel_means=tuple(cfg.PIXEL_MEANS))
        self._settings.check()
        self._seed = int(pick("seed", cfg.RNG_SEED))
        self._aspect_grouping = bool(pick("aspect_grouping", cfg.TRAIN.ASPECT_GROUPING))
        self._use_prefetch = bool(pick("prefetch", cfg.TRAIN.USE_PREFETCH))
        self._source: MinibatchSource | None = None
        self._prefetcher: Prefetcher | None = None

        top[0].reshape(1, 3, int(max(self._settings.scales)), int(self._settings.max_size))
        top[1].reshape(1, 3)
        top[2].reshape(1, 5)

        if p["dataset"]:
            self._load_dataset(p, flip=bool(pick("flip", cfg.TRAIN.USE_FLIPPED)))
        else:
            stray = [k for k, unset in _DATASET_ONLY.items() if p[k] != unset]
            if stray:
                raise ValueError(f"param_str keys {stray} need a 'dataset'")

    def _load_dataset(self, p: dict, flip: bool) -> None:
        dataset = get_dataset(p["dataset"], p["root"] or None, p["split"] or None,
                              parse_classes(p["classes"]))
        if dataset.num_classes != self._num_classes:
            raise ValueError(f"param_str num_classes is {self._num_classes} but dataset "
                             f"{dataset.name} has {dataset.num_classes} classes "
                             f"({', '.join(dataset.classes)})")
        self._install(dataset.training_roidb(flip=flip, use_difficult=p["use_difficult"],
                                             skip_bad=p["skip_bad"]))

    def _install(self, roidb: list[dict]) -> None:
        self.close()
        self._roidb = roidb
        self._source = MinibatchSource(roidb, self._settings, self._seed,
                                       self._aspect_grouping)
        if self._use_prefetch:
            name = getattr(self, "layer_name", "") or "RoIDataLayer"
            self._prefetcher = Prefetcher(self._source.next, depth=2, name=f"prefetch-{name}")

    @reports_errors
    def set_roidb(self, roidb: list[dict]) -> None:
        """Train on ``roidb`` (frcnn.data.roidb entries; replaces any earlier one)."""
        check_roidb(roidb, self._num_classes)
        self._install(list(roidb))

    def close(self) -> None:
        """Stop the prefetch thread, if any (it also stops at exit)."""
        if getattr(self, "_prefetcher", None) is not None:
            self._prefetcher.close()
            self._prefetcher = None

    @reports_errors
    def forward(self, bottom, top):
        if self._source is None:
            raise RuntimeError("no roidb: give a 'dataset' in the param_str, or call "
                               "set_roidb(roidb) before the first forward")
        blobs = self._prefetcher.get() if self._prefetcher is not None else self._source.next()
        for i, name in enumerate(_TOPS):
            top[i].reshape(*blobs[name].shape)
            top[i].data[...] = blobs[name]

    def reshape(self, bottom, top):
        """Tops are shaped in forward."""

    def backward(self, top, propagate_down, bottom):
        """A data layer passes no gradient."""
