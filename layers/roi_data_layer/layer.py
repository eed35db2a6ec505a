"""Data layers under py-faster-rcnn's module name ``roi_data_layer.layer``: RoIDataLayer,
and OHEMDataLayer (defined in ``roi_data_layer.ohem_layer``, exposed here as the seed's
prototxts name it).

The module name is py-faster-rcnn's, so prototxts that say
``python_param { module: 'roi_data_layer.layer' layer: 'RoIDataLayer' }`` load unchanged.

RoIDataLayer: no bottoms.  The tops the prototxt declares choose the mode, as
py-faster-rcnn's cfg.TRAIN.HAS_RPN does:

three tops, end to end (an RPN in the net makes the RoIs; with cfg TRAIN.HAS_RPN False,
  three tops are Fast R-CNN's data, rois, labels, without box regression):
  data      (1, 3, H, W) float32: BGR minus cfg.PIXEL_MEANS, scaled so the short side is a
            randomly drawn entry of the scales and the long side at most max_size
  im_info   (1, 3) float32: H, W, scale
  gt_boxes  (G, 5) float32: x1 y1 x2 y2 class in scaled-image pixels, G >= 1 (G = 0 for
            an image without objects with cfg TRAIN.USE_EMPTY_IMAGES)
six tops, Fast R-CNN from precomputed proposals (py-faster-rcnn's Fast R-CNN nets, the
  Fast R-CNN stages of its alternating optimisation, abhi2610/ohem's OHEM nets):
  data (N, 3, H, W) with N = TRAIN.IMS_PER_BATCH, rois (R, 5) [image index, x1, y1, x2,
  y2], labels (R,), bbox_targets, bbox_inside_weights, bbox_outside_weights (R, 4K):
  RoIs sampled from the roidb's proposals (frcnn.data.fast_rcnn; TRAIN.BATCH_SIZE -1
  keeps them all, for OHEMDataLayer to mine).
Tops are shaped at setup with placeholders ((N, 3, max scale, max_size), then (1, 3) and
(1, 5), or (1, 5), (1,) and (1, 4K)) and reshaped by every forward.  Images come in
shuffled epochs (optionally aspect-grouped) from a numpy Generator; optionally a background
thread prepares the next ones.  The layer uses the TRAIN settings in either phase.
``get_train_state()`` / ``set_train_state(state)`` save and restore its place in the epoch
and its Generator (prefetched minibatches not counted), for exact resumes (frcnn.train_state).

The roidb comes either from Python, ``net.layers[0].set_roidb(roidb)`` (py-faster-rcnn's
way; see frcnn.data.roidb), or from the param_str, which lets plain ``caffe train`` run the
net (the layer loads the dataset at setup, flipping per cfg)::

    'num_classes': 4
    'dataset': 'synth_train'      # or voc_2007_trainval, or the path of a VOC-format folder
    'root': 'data/synth'
    'proposals': 'rpn.pkl'        # six tops only: the dataset's proposals
                                  # (frcnn.data.proposal_files)

In Fast R-CNN mode the regression targets are normalised with TRAIN.BBOX_NORMALIZE_MEANS /
STDS, or with per-class statistics of the data when BBOX_NORMALIZE_TARGETS_PRECOMPUTED is
False; ``layer.bbox_means`` and ``layer.bbox_stds`` (K, 4) are what a snapshot folds into
bbox_pred.

param_str keys (frcnn.layer_params; unset ones come from cfg):
  num_classes   classes with background; must match the dataset's class list
  dataset root split classes use_difficult skip_bad   which data (frcnn.data.datasets)
  proposals     precomputed proposals of the dataset (six tops only)
  cfg           a YAML config merged into the global cfg first (for ``caffe train``)
  scales max_size flip aspect_grouping seed prefetch   override TRAIN.SCALES,
                TRAIN.MAX_SIZE, TRAIN.USE_FLIPPED, TRAIN.ASPECT_GROUPING, RNG_SEED,
                TRAIN.USE_PREFETCH
cfg keys read at setup: those above and PIXEL_MEANS, TRAIN.IMS_PER_BATCH (1 end to end);
Fast R-CNN mode: TRAIN.BATCH_SIZE, FG_FRACTION, FG_THRESH, BG_THRESH_HI/LO, BBOX_THRESH,
BBOX_INSIDE_WEIGHTS, BBOX_NORMALIZE_TARGETS(_PRECOMPUTED), BBOX_NORMALIZE_MEANS/STDS.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import caffe
from frcnn.caffe_layer import check_bottoms, check_tops, layer_params, reports_errors
from frcnn.config import cfg, cfg_from_file
from frcnn.data.datasets import get_dataset, parse_classes
from frcnn.data.fast_rcnn import (check_fast_rcnn_roidb, fast_rcnn_params,
                                  get_fast_rcnn_minibatch)
from frcnn.data.minibatch import BlobSettings, MinibatchSource, get_minibatch
from frcnn.data.prefetch import Prefetcher
from frcnn.data.roidb import check_roidb
from frcnn.data.training_set import (END_TO_END_TOPS, FAST_RCNN_TOPS, build_roidb,
                                     check_mode, is_fast_rcnn)
from roi_data_layer.ohem_layer import OHEMDataLayer  # noqa: F401  (the seed's module name)

_TOPS = END_TO_END_TOPS
# param_str keys that only mean something together with 'dataset', and their unset values
_DATASET_ONLY = {"root": "", "images": "", "split": "", "classes": "", "use_difficult": False,
                 "skip_bad": False, "flip": None, "proposals": ""}


class RoIDataLayer(caffe.Layer):
    """Training images and their gt boxes; see the module docstring."""

    @reports_errors
    def setup(self, bottom, top):
        check_bottoms(self, bottom, (0,), "none")
        check_tops(self, top, (3, 6), f"end to end: {', '.join(_TOPS)}; Fast R-CNN: "
                                      f"{', '.join(FAST_RCNN_TOPS)}")
        p = layer_params(self)
        if p["cfg"]:
            cfg_from_file(str(Path(p["cfg"]).expanduser().absolute()))
        self.fast_rcnn = is_fast_rcnn(len(top), bool(cfg.TRAIN.HAS_RPN))
        self._tops = FAST_RCNN_TOPS[:len(top)] if self.fast_rcnn else _TOPS
        self._num_classes = p["num_classes"]
        if self._num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got "
                             f"{self._num_classes}")
        if self.fast_rcnn:
            self._fast_params = fast_rcnn_params(cfg)
            self._fast_params.check()
            ims = self._fast_params.ims_per_batch
        else:
            check_mode(False, int(cfg.TRAIN.IMS_PER_BATCH), bool(p["proposals"]),
                       "this data layer (param_str 'proposals')", len(top))
            ims = 1
        self._ims_per_batch = ims
        self.bbox_means = self.bbox_stds = None

        def pick(key: str, default: Any) -> Any:
            return default if p[key] is None else p[key]

        self._settings = BlobSettings(scales=tuple(pick("scales", cfg.TRAIN.SCALES)),
                                      max_size=pick("max_size", cfg.TRAIN.MAX_SIZE),
                                      pixel_means=tuple(cfg.PIXEL_MEANS))
        self._settings.check()
        self._seed = int(pick("seed", cfg.RNG_SEED))
        self._aspect_grouping = bool(pick("aspect_grouping", cfg.TRAIN.ASPECT_GROUPING))
        self._use_prefetch = bool(pick("prefetch", cfg.TRAIN.USE_PREFETCH))
        self._allow_empty = bool(cfg.TRAIN.USE_EMPTY_IMAGES)  # images without objects
        self._source: MinibatchSource | None = None
        self._prefetcher: Prefetcher | None = None

        top[0].reshape(ims, 3, int(max(self._settings.scales)), int(self._settings.max_size))
        if self.fast_rcnn:
            top[1].reshape(1, 5)
            top[2].reshape(1)
            for i in range(3, len(top)):
                top[i].reshape(1, 4 * self._num_classes)
        else:
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
                              parse_classes(p["classes"]), images=p["images"] or None)
        if dataset.num_classes != self._num_classes:
            raise ValueError(f"param_str num_classes is {self._num_classes} but dataset "
                             f"{dataset.name} has {dataset.num_classes} classes "
                             f"({', '.join(dataset.classes)})")
        if self.fast_rcnn and not p["proposals"]:
            raise ValueError("a Fast R-CNN data layer (six tops) given a 'dataset' needs its "
                             "'proposals' file too")
        t = cfg.TRAIN
        built = build_roidb(
            dataset.load(skip_bad=p["skip_bad"]), self._num_classes, self.fast_rcnn, flip,
            keep_empty=self._allow_empty, use_difficult=p["use_difficult"],
            proposals=p["proposals"] or None, fast_params=getattr(self, "_fast_params", None),
            normalize=bool(t.BBOX_NORMALIZE_TARGETS), means=t.BBOX_NORMALIZE_MEANS,
            stds=t.BBOX_NORMALIZE_STDS, precomputed=bool(t.BBOX_NORMALIZE_TARGETS_PRECOMPUTED))
        if self.fast_rcnn:
            self.bbox_means, self.bbox_stds = built.means, built.stds
        self._install(built.roidb)

    def _install(self, roidb: list[dict], state: dict | None = None) -> None:
        """A new source on ``roidb`` (from ``state`` when given, else from the seed) and,
        with prefetching, a new thread (an old thread only ever touches the old source)."""
        self.close()
        self._roidb = roidb
        build = None
        if self.fast_rcnn:
            settings, k, params = self._settings, self._num_classes, self._fast_params

            def build(entries, rng):
                return get_fast_rcnn_minibatch(entries, settings, k, params, rng)
        elif self._allow_empty:
            settings = self._settings

            def build(entries, rng):
                return get_minibatch(entries, settings, rng, allow_empty=True)
        source = MinibatchSource(roidb, self._settings, self._seed, self._aspect_grouping,
                                 self._ims_per_batch, build)
        if state is not None:
            source.set_state(state)
        self._source = source
        self._consumed_state = None  # with prefetching: the state after the last one used
        if self._use_prefetch:
            self._consumed_state = source.get_state()

            def produce():  # the state after each minibatch travels with it
                return source.next(), source.get_state()
            name = getattr(self, "layer_name", "") or "RoIDataLayer"
            self._prefetcher = Prefetcher(produce, depth=2, name=f"prefetch-{name}")

    @reports_errors
    def set_roidb(self, roidb: list[dict]) -> None:
        """Train on ``roidb`` (replaces any earlier one): frcnn.data.roidb entries end to
        end; in Fast R-CNN mode entries with proposals and normalised bbox_targets
        (frcnn.data.fast_rcnn.fast_rcnn_roidb, or py-faster-rcnn's own roidb)."""
        if self.fast_rcnn:
            check_fast_rcnn_roidb(roidb, self._num_classes)
        else:
            check_roidb(roidb, self._num_classes, allow_empty=self._allow_empty)
        self._install(list(roidb))

    def get_train_state(self) -> dict:
        """Where the data stands after the minibatches used so far (prefetched ones not
        counted), JSON-able: see frcnn.data.minibatch.MinibatchSource.get_state."""
        if self._source is None:
            raise RuntimeError("no roidb yet: nothing to save")
        if self._prefetcher is not None:
            return self._consumed_state
        return self._source.get_state()

    @reports_errors
    def set_train_state(self, state: dict) -> None:
        """Continue from a ``get_train_state`` of a layer on the same roidb (a resume): the
        next minibatches are the ones that layer would have given."""
        if self._source is None:
            raise RuntimeError("no roidb: call set_roidb(roidb) before set_train_state")
        self._install(self._roidb, state)

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
        if self._prefetcher is not None:
            blobs, self._consumed_state = self._prefetcher.get()
        else:
            blobs = self._source.next()
        for i, name in enumerate(self._tops):
            top[i].reshape(*blobs[name].shape)
            top[i].data[...] = blobs[name]

    def reshape(self, bottom, top):
        """Tops are shaped in forward."""

    def backward(self, top, propagate_down, bottom):
        """A data layer passes no gradient."""
