"""Running a deploy net (frcnn.deploy.caffe_deploy) with OpenCV DNN 4.x: no Caffe needed.

OpenCV facts this relies on (OpenCV 4.x's dnn module):

- ``cv2.dnn.readNetFromCaffe(prototxt, caffemodel)`` reads the deploy files; its
  ``opencv-caffe.proto`` declares ``ProposalParameter`` (feat_stride, base_size, min_size,
  repeated ratio and scale, pre_nms_topn, post_nms_topn, nms_thresh).  OpenCV 5 dropped
  the Caffe importer.
- ``net.forward(names)`` and ``net.forwardAndRetrieve(names)`` take *layer* names, not top
  (blob) names: the rois come from the Proposal layer's name ("proposal"), not "rois".  A
  layer's outputs past the first are only reachable with ``forwardAndRetrieve``, which
  returns every output of each named layer.  ``OpenCVRunner`` maps blob names to
  (layer, output index) from the prototxt, the last layer writing a blob winning (in-place
  layers), as in Caffe.
- The Proposal layer always outputs ``post_nms_topn`` rows (rois (N, 5) and scores (N, 1)):
  when fewer boxes survive the NMS, the rows past them are zeros, and the head runs on them
  too.  ``raw`` drops those trailing all-zero rows from rois and the head outputs.
- OpenCV's Proposal ignores ``min_size`` (no small-box filter) and does not clamp dw / dh;
  its NMS overlap is 0 for boxes that do not intersect by a full pixel.  Its decode and
  anchors otherwise follow py-faster-rcnn (x2 = ctr + 0.5 w, clip to [0, W - 1]).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

INSTALL_HINT = "install opencv-python-headless<5"
OUTPUTS = ("rois", "cls_prob", "bbox_pred")


def opencv_dnn_available() -> str | None:
    """None when the installed cv2 can read Caffe models, else a one-line reason."""
    try:
        import cv2
    except ImportError as e:
        return f"cv2 is not importable ({e}); {INSTALL_HINT}"
    version = getattr(cv2, "__version__", "unknown")
    dnn = getattr(cv2, "dnn", None)
    if dnn is None:
        return f"OpenCV {version} has no dnn module; {INSTALL_HINT}"
    if not hasattr(dnn, "readNetFromCaffe"):
        try:
            major = int(str(version).split(".")[0])
        except ValueError:
            major = 0
        if major >= 5:
            return (f"OpenCV {version} removed cv2.dnn.readNetFromCaffe (OpenCV 5 has no "
                    f"Caffe importer); {INSTALL_HINT}")
        return f"OpenCV {version}'s dnn module has no readNetFromCaffe; {INSTALL_HINT}"
    return None


# --------------------------------------------------------------------------- prototxt tops

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|#[^\n]*|[{}:]|[^\s{}:"\'#]+')


def _unquote(token: str) -> str:
    if token[:1] not in "\"'":
        return token
    body = token[1:-1]
    if "\\" not in body:
        return body
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def blob_producers(prototxt_text: str) -> dict[str, tuple[str, int]]:
    """{blob: (layer name, output index)} of a prototxt's ``layer`` blocks (last writer wins).

    A small scan of the text format (no caffe_pb2: the runtime side needs no Caffe); net
    inputs (``input:`` fields and Input layers) map to their own names.
    """
    producers: dict[str, tuple[str, int]] = {}
    depth = 0
    layer: dict | None = None
    tokens = [t for t in _TOKEN.findall(prototxt_text) if not t.startswith("#")]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0 and layer is not None:
                for index, top in enumerate(layer["tops"]):
                    producers[top] = (layer["name"], index)
                layer = None
        elif depth == 0 and tok == "layer" and i + 1 < len(tokens) and tokens[i + 1] == "{":
            layer = {"name": "", "tops": []}
        elif depth == 0 and tok == "input" and tokens[i + 1:i + 2] == [":"]:
            name = _unquote(tokens[i + 2])
            producers[name] = (name, 0)
            i += 2
        elif depth == 1 and layer is not None and tok in ("name", "top") \
                and tokens[i + 1:i + 2] == [":"] and i + 2 < len(tokens):
            value = _unquote(tokens[i + 2])
            if tok == "name":
                layer["name"] = value
            else:
                layer["tops"].append(value)
            i += 2
        i += 1
    return producers


# --------------------------------------------------------------------------- the runner

def _trailing_zero_rows(rois: np.ndarray) -> int:
    """How many rows to keep: up to the last row that is not all zeros."""
    nonzero = np.flatnonzero(np.any(rois != 0, axis=1))
    return int(nonzero[-1]) + 1 if len(nonzero) else 0


class OpenCVRunner:
    """A deploy net in cv2.dnn, returning the raw rois and head outputs."""

    def __init__(self, deploy_prototxt: str | os.PathLike, caffemodel: str | os.PathLike,
                 *, backend: int | None = None, target: int | None = None):
        reason = opencv_dnn_available()
        if reason:
            raise RuntimeError(reason)
        import cv2

        self.prototxt = Path(deploy_prototxt)
        self.caffemodel = Path(caffemodel)
        for path in (self.prototxt, self.caffemodel):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
        self.producers = blob_producers(self.prototxt.read_text())
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(self.prototxt), str(self.caffemodel))
        except cv2.error as e:
            raise ValueError(f"{self.prototxt}: OpenCV {cv2.__version__} cannot read the net: "
                             f"{str(e).strip().splitlines()[-1]}") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV if backend is None
                                      else backend)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU if target is None else target)
        missing = [b for b in OUTPUTS if b not in self.producers]
        if missing:
            raise ValueError(f"{self.prototxt}: no layer writes {missing}")

    def _pin(self, blob: str) -> tuple[str, int]:
        try:
            return self.producers[blob]
        except KeyError:
            raise KeyError(f"{self.prototxt}: no layer writes a blob '{blob}'") from None

    def forward(self, blob: np.ndarray, im_info: np.ndarray,
                names: Sequence[str]) -> dict[str, np.ndarray]:
        """{name: array} for blob names of the net (as OpenCV returns them)."""
        data = np.ascontiguousarray(blob, dtype=np.float32)
        if data.ndim != 4 or data.shape[:2] != (1, 3):
            raise ValueError(f"blob must be (1, 3, H, W), got {data.shape}")
        info = np.ascontiguousarray(im_info, dtype=np.float32).reshape(-1)
        if info.shape != (3,):
            raise ValueError(f"im_info must be (1, 3) [height, width, scale], got "
                             f"{np.shape(im_info)}")
        self.net.setInput(data, "data")
        self.net.setInput(info.reshape(1, 3), "im_info")
        pins = [self._pin(n) for n in names]
        layers = list(dict.fromkeys(layer for layer, _ in pins))
        results = self.net.forwardAndRetrieve(layers)
        by_layer = dict(zip(layers, results))
        return {n: np.asarray(by_layer[layer][index])
                for n, (layer, index) in zip(names, pins)}

    def raw(self, blob: np.ndarray, im_info: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rois (R, 5) [0, x1, y1, x2, y2] in input pixels, cls_prob (R, K), bbox_pred (R, 4K)).

        blob: (1, 3, H, W) float32, mean-subtracted and scaled; im_info: (1, 3)
        [H, W, scale].  The Proposal layer's zero rows (fewer proposals than post_nms_topn)
        are dropped.
        """
        out = self.forward(blob, im_info, OUTPUTS)
        rois = out["rois"].reshape(-1, 5)
        cls_prob = out["cls_prob"].reshape(rois.shape[0], -1)
        bbox_pred = out["bbox_pred"].reshape(rois.shape[0], -1)
        keep = _trailing_zero_rows(rois)
        return (rois[:keep].astype(np.float32, copy=True),
                cls_prob[:keep].astype(np.float32, copy=True),
                bbox_pred[:keep].astype(np.float32, copy=True))
