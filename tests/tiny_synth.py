"""The small synthetic VOC folder the end-to-end tests train on."""
from __future__ import annotations

from pathlib import Path

from frcnn.data.synth import SynthOptions, write_synth_dataset


#: cfg pairs sized for it: 96 x 128 inputs, few proposals and RoIs
SMALL = ("TRAIN.SCALES", "(96,)", "TRAIN.MAX_SIZE", "128", "TEST.SCALES", "(96,)",
         "TEST.MAX_SIZE", "128", "TRAIN.RPN_PRE_NMS_TOP_N", "600", "TRAIN.RPN_POST_NMS_TOP_N",
         "100", "TRAIN.BATCH_SIZE", "16", "TEST.RPN_POST_NMS_TOP_N", "50",
         "TRAIN.OHEM_BATCH_SIZE", "16")


def write_tiny_synth(root: Path, num_train: int, num_test: int) -> Path:
    """``root`` as a synthetic VOC folder of 96 x 128 images with objects of 24-48 px
    (a few seconds of training per iteration batch); returns ``root``."""
    write_synth_dataset(root, SynthOptions(num_train=num_train, num_test=num_test, height=96,
                                           width=128, min_object=24, max_object=48), log=None)
    return root
