"""frcnn demo end to end, at a toy size (the real run is measured, not tested)."""
from __future__ import annotations

import json
import math

import pytest

from frcnn.app.demo import run_demo


def test_demo_runs_every_stage(tmp_path, cfg, capsys):
    m_ap = run_demo(str(tmp_path), iters=2, num_train=8, num_test=4)
    out = capsys.readouterr().out
    for stage in ("1/4", "2/4", "3/4", "4/4", "VOC07 mAP"):
        assert stage in out
    assert math.isnan(m_ap) or 0.0 <= m_ap <= 1.0
    assert (tmp_path / "synth" / "ImageSets" / "Main" / "test.txt").exists()
    assert json.loads((tmp_path / "test" / "eval.json").read_text())["images"] == 4
    assert len(json.loads((tmp_path / "detect" / "detections.json").read_text())) == 4
    assert "where the remaining errors are" in out
    assert (tmp_path / "train" / "loss.csv").exists() and (tmp_path / "train" / "loss.png").exists()
    cfg_text = (tmp_path / "train" / "cfg.yml").read_text()
    assert "RNG_SEED: 3" in cfg_text and "USE_EMPTY_IMAGES: true" in cfg_text
    train_net = (tmp_path / "train" / "net" / "train.prototxt").read_text()
    assert "drop9" not in train_net
    assert '"conv1/mvn"' in train_net and '"fire9/expand3x3/mvn"' in train_net  # trunk_norm all


def test_demo_seed_makes_its_own_dataset_and_run(tmp_path, cfg, capsys):
    run_demo(str(tmp_path), iters=1, num_train=4, num_test=2, seed=3)
    first = (tmp_path / "synth" / "JPEGImages" / "000001.jpg").read_bytes()
    run_demo(str(tmp_path), iters=1, num_train=4, num_test=2, seed=7)
    out = capsys.readouterr().out
    assert "synthetic dataset (seed 7) ->" in out          # rewritten: another seed
    assert json.loads((tmp_path / "synth" / "synth.json").read_text())["options"]["seed"] == 7
    assert (tmp_path / "synth" / "JPEGImages" / "000001.jpg").read_bytes() != first
    assert "RNG_SEED: 7" in (tmp_path / "train" / "cfg.yml").read_text()
    run_demo(str(tmp_path), iters=1, num_train=4, num_test=2, seed=7,
             set_pairs=("TRAIN.FG_FRACTION", "0.5"), scales=(2, 4))   # levers
    assert "synthetic dataset (seed 7): using" in capsys.readouterr().out
    cfg_text = (tmp_path / "train" / "cfg.yml").read_text()
    assert "FG_FRACTION: 0.5" in cfg_text and "RNG_SEED: 7" in cfg_text
    run = json.loads((tmp_path / "train" / "run.json").read_text())
    assert "2 scales [2, 4] = 6 anchors" in run["variant"]
    assert "'scales': [2, 4]" in (tmp_path / "train" / "net" / "test.prototxt").read_text()


def test_demo_set_pairs_must_pair(tmp_path):
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        run_demo(str(tmp_path), iters=1, set_pairs=("TRAIN.FG_FRACTION",))
    assert not (tmp_path / "synth").exists()


def test_recipe_roi_batch_reaches_the_sampler_and_set_pairs_override_it():
    """The recipe's RoIs per image become TRAIN.BATCH_SIZE (plain) or OHEM_BATCH_SIZE
    (OHEM, whose sampler keeps every RoI); a later --set pair wins, which is how the
    README's levers were measured."""
    from frcnn.app.demo import DEMO
    from frcnn.app.runs import merged_cfg

    plain = merged_cfg(set_pairs=DEMO.cfg(ohem=False))
    assert plain.TRAIN.BATCH_SIZE == DEMO.roi_batch == plain.TRAIN.OHEM_BATCH_SIZE
    ohem = merged_cfg(set_pairs=DEMO.cfg(ohem=True))
    assert ohem.TRAIN.OHEM_BATCH_SIZE == DEMO.roi_batch
    assert ohem.TRAIN.BATCH_SIZE == merged_cfg().TRAIN.BATCH_SIZE  # not the recipe's
    lever = merged_cfg(set_pairs=DEMO.cfg(ohem=False) + ("TRAIN.BATCH_SIZE", "48"))
    assert lever.TRAIN.BATCH_SIZE == 48


def test_recipe_overrides_are_read_as_their_fields_types():
    from frcnn.app.demo import DEMO

    r = DEMO.replace(["iters=1200", "base_lr=0.02", "scales=2,4", "empty_images=false",
                      "trunk_filler=msra"])
    assert (r.iters, r.base_lr, r.scales, r.empty_images, r.trunk_filler) == (
        1200, 0.02, (2.0, 4.0), False, "msra")
    assert r.roi_batch == DEMO.roi_batch and DEMO.trunk_filler == "xavier"  # DEMO untouched
    assert DEMO.replace([]) == DEMO
    for bad, message in (("iters", "FIELD=VALUE"), ("epochs=3", "FIELD=VALUE"),
                         ("iters=many", "'iters=many'"), ("empty_images=maybe", "true or false"),
                         ("scales=", "comma-separated")):
        with pytest.raises(ValueError, match=message):
            DEMO.replace([bad])


def test_demo_recipe_reaches_the_train_net_and_the_model(tmp_path, cfg, capsys):
    from frcnn.app.demo import DEMO
    from frcnn.cli import main
    from frcnn.caffe_files import read_sidecar

    assert main(["demo", "--out", str(tmp_path), "--iters", "1", "--num-train", "4",
                 "--num-test", "2", "--recipe", "trunk_filler=msra", "roi_batch=16",
                 "trunk_norm=squeeze"]) == 0
    train_net = (tmp_path / "train" / "net" / "train.prototxt").read_text()
    assert 'type: "msra"' in train_net and 'type: "xavier"' not in train_net
    for net_file in ("train.prototxt", "test.prototxt"):   # the model is tested with its BN
        assert '"fire9/squeeze1x1/mvn"' in (tmp_path / "train" / "net" / net_file).read_text()
    assert json.loads((tmp_path / "test" / "eval.json").read_text())["images"] == 2
    assert "BATCH_SIZE: 16" in (tmp_path / "train" / "cfg.yml").read_text()
    (model,) = (tmp_path / "train").glob("*.caffemodel")
    recipe = read_sidecar(str(model))["recipe"]
    assert {"trunk_filler": "msra", "roi_batch": 16, "trunk_norm": "squeeze",
            "iters": DEMO.iters}.items() <= recipe.items()
