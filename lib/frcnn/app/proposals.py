"""``frcnn proposals``: an RPN's proposals for every image of a dataset, written to a file.

py-faster-rcnn's ``tools/rpn_generate.py`` for the alternating optimisation: the RPN test
net (inputs data and im_info; output rois, optionally scores; py-faster-rcnn's
``rpn_test.pt``, or any end-to-end test net) runs on each image at TEST.SCALES[0], and the
rois, divided by the image's scale, are the image's proposals.  As rpn_generate does, the
proposal layer keeps every candidate before NMS and 2000 after it (TEST.RPN_PRE_NMS_TOP_N
-1, TEST.RPN_POST_NMS_TOP_N 2000) unless --cfg or --set say otherwise.  The file's form
follows its extension (frcnn.data.proposal_files): ``.pkl`` is py-faster-rcnn's, ``.json``
the plain one with scores.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from frcnn import devices

RPN_GENERATE_SETTINGS = ("TEST.RPN_PRE_NMS_TOP_N", "-1", "TEST.RPN_POST_NMS_TOP_N", "2000")


@dataclass
class ProposalsRequest:
    model: str
    net: str
    dataset: str
    out: str
    root: str | None = None
    split: str | None = None          # of a folder given by path (trainval)
    cfg_file: str | None = None
    set_pairs: Sequence[str] = ()
    max_images: int = 0               # 0: all (a file for training needs all)
    classes: Sequence[str] | None = None  # the dataset's class list (None: the folder's own)


def run_proposals(req: ProposalsRequest) -> Path:
    """Write the proposals file; return its path."""
    import caffe

    from frcnn import config
    from frcnn.app.runs import install_cfg
    from frcnn.data.blobs import read_image
    from frcnn.data.datasets import get_dataset
    from frcnn.data.proposal_files import PICKLE_SUFFIXES, save_proposals
    from frcnn.inference import DetectSettings, rpn_proposals

    out = Path(req.out)
    if out.suffix.lower() not in PICKLE_SUFFIXES + (".json",):
        raise ValueError(f"--out {out}: use FILE.pkl (py-faster-rcnn's form) or FILE.json")
    for path, what in ((req.model, "model"), (req.net, "RPN test net")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
    dataset = get_dataset(req.dataset, root=req.root, split=req.split, classes=req.classes)
    c = config.default_config()  # defaults <- rpn_generate's settings <- --cfg <- --set
    config.cfg_from_list(list(RPN_GENERATE_SETTINGS), c)
    if req.cfg_file:
        config.cfg_from_file(req.cfg_file, c)
    if req.set_pairs:
        config.cfg_from_list(list(req.set_pairs), c)
    install_cfg(c)  # the ProposalLayer reads TEST.RPN_* when the net is built
    devices.apply(caffe)
    from frcnn.model_files import check_model_record, load_weights
    from frcnn.caffe_files import read_sidecar

    check_model_record(req.model, read_sidecar(req.model))  # truncated or edited: an error
    net = caffe.Net(req.net, caffe.TEST)
    load_weights(net, req.model)  # checked in Python first: Caffe would abort
    for blob in ("data", "im_info", "rois"):
        if blob not in net.blobs:
            raise ValueError(f"{req.net} is not an RPN test net: it has no '{blob}' blob "
                             f"(inputs data and im_info, output rois)")
    settings = DetectSettings.from_cfg(c)
    records = dataset.load()
    if req.max_images:
        records = records[:req.max_images]
    boxes, scores = [], []
    start = time.time()
    for i, r in enumerate(records):
        b, s = rpn_proposals(net, read_image(r["image"]), settings)
        boxes.append(b)
        scores.append(s)
        if (i + 1) % 25 == 0 or i + 1 == len(records):
            per = (time.time() - start) / (i + 1)
            print(f"[proposals] {i + 1}/{len(records)} images  {per:.3f}s/image  "
                  f"ETA {per * (len(records) - i - 1):.0f}s", flush=True)
    has_scores = all(not (len(s) and s[0] != s[0]) for s in scores)  # NaN: no scores blob
    save_proposals(out, [r["id"] for r in records], boxes, scores if has_scores else None,
                   dataset=dataset.name)
    mean = sum(len(b) for b in boxes) / max(len(boxes), 1)
    print(f"[proposals] {len(records)} images of {dataset.name}, {mean:.0f} proposals per "
          f"image on average -> {out}", flush=True)
    return out
