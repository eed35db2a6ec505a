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
    assert "drop9" not in (tmp_path / "train" / "net" / "train.prototxt").read_text()


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
