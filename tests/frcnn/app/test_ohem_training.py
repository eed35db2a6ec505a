"""The OHEM net trains end to end: finite losses, hard RoIs only, shared weights."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from frcnn import config
from frcnn.app.training import TrainRequest, run_train
from tests.tiny_synth import SMALL, write_tiny_synth

# the OHEM variant's own config keeps TRAIN.BATCH_SIZE -1: do not override it
OHEM_SMALL = tuple(x for pair in zip(SMALL[::2], SMALL[1::2]) if pair[0] != "TRAIN.BATCH_SIZE"
                   for x in pair)


@pytest.fixture
def trainer_after_steps(tmp_path, monkeypatch):
    """Run `frcnn train` on the OHEM net for 4 iterations; keep the Trainer."""
    import frcnn.train as train_module

    data = tmp_path / "synth"
    write_tiny_synth(data, 6, 1)
    seen = {}
    original = train_module.Trainer.train

    def keep(self):
        seen["trainer"] = self
        return original(self)

    monkeypatch.setattr(train_module.Trainer, "train", keep)
    saved = copy.deepcopy(config.cfg)
    try:
        run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end_ohem", dataset="synth_train",
                               root=str(data), iters=4, out=str(tmp_path / "run"),
                               set_pairs=OHEM_SMALL, base_lr=0.001, scales=(1.5, 3), iter_size=1,
                               snapshot_iters=0, display=1))
        yield seen["trainer"]
    finally:
        config.cfg.clear()
        config.cfg.update(saved)


def test_ohem_net_trains_with_finite_losses_and_shared_weights(trainer_after_steps):
    net = trainer_after_steps.net
    assert trainer_after_steps.solver.iter == 4
    for name in net.outputs:
        assert np.isfinite(net.blobs[name].data).all(), name
    # every candidate RoI went to the read-only branch (BATCH_SIZE -1), at most
    # OHEM_BATCH_SIZE (16) hard ones to the trained branch
    assert config.cfg.TRAIN.BATCH_SIZE == -1
    assert net.blobs["rois"].data.shape[0] > 16
    assert net.blobs["rois_hard"].data.shape[0] == net.blobs["labels_hard"].data.shape[0] == 16
    for layer in ("conv1_last", "cls_score", "bbox_pred"):
        trained, readonly = net.params[layer], net.params[f"{layer}_readonly"]
        for a, b in zip(trained, readonly):
            np.testing.assert_array_equal(a.data, b.data)
            a.data.flat[0] += 1.0  # one blob, not a copy
            assert b.data.flat[0] == a.data.flat[0]
