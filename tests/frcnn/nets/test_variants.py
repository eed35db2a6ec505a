"""The variant table: presets, anchors, validation."""
from __future__ import annotations

import pytest

from frcnn.nets import variants
from frcnn.nets.variants import PRESETS, Variant


def test_presets_cover_the_issue():
    assert set(PRESETS) == {
        "squeezenet/faster_rcnn_end2end",
        "squeezenet/faster_rcnn_end2end_ohem",
        "squeezenet/faster_rcnn_end2end_ohem_seed70",
        "zf/faster_rcnn_end2end",
    }
    for name, v in PRESETS.items():
        assert v.name == name
        assert v.num_classes == 4
        assert v.backbone == name.split("/")[0]
        assert v.ohem == ("ohem" in name)


def test_anchor_presets():
    assert PRESETS["squeezenet/faster_rcnn_end2end"].num_anchors == 9
    seed = PRESETS["squeezenet/faster_rcnn_end2end_ohem_seed70"]
    assert (len(seed.ratios), len(seed.scales), seed.num_anchors) == (7, 10, 70)
    assert variants.ANCHOR_PRESETS["seed"] == (seed.ratios, seed.scales)
    # ratios symmetric about 1 (h/w and w/h both present)
    assert sorted(round(1 / r, 6) for r in seed.ratios) == sorted(seed.ratios)


def test_solver_defaults_are_a_tenth_of_zf_end2end():
    v = PRESETS["zf/faster_rcnn_end2end"]
    assert v.base_lr == pytest.approx(0.0001)
    assert (v.lr_policy, v.gamma, v.stepsize, v.momentum, v.weight_decay) == \
        ("step", 0.1, 50000, 0.9, 0.0005)
    assert v.snapshot_prefix == "zf_faster_rcnn"
    assert PRESETS["squeezenet/faster_rcnn_end2end_ohem"].snapshot_prefix == \
        "squeezenet_faster_rcnn_ohem"


@pytest.mark.parametrize("changes, words", [
    ({"num_classes": 1}, "num_classes"),
    ({"ratios": ()}, "ratios"),
    ({"scales": (8, -1)}, "scales"),
    ({"backbone": "vgg16"}, "backbone"),
    ({"scale": 600, "max_size": 500}, "max_size"),
    ({"stepsize": 0}, "stepsize"),
    ({"base_lr": 0.0}, "base_lr"),
    ({"data_params": (("num_classes", 3),)}, "num_classes"),
])
def test_invalid_variants_are_refused(changes, words):
    with pytest.raises(ValueError, match=words):
        PRESETS["squeezenet/faster_rcnn_end2end"].replace(**changes)


def test_replace_keeps_the_rest():
    v = PRESETS["squeezenet/faster_rcnn_end2end"].replace(num_classes=21)
    assert isinstance(v, Variant) and v.num_classes == 21 and v.num_anchors == 9


def test_import_is_cheap():
    import subprocess
    import sys

    code = ("import sys, frcnn.nets.variants, frcnn.nets.commands, frcnn.nets.detection\n"
            "print(sorted(m for m in ('caffe', 'numpy', 'google.protobuf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
