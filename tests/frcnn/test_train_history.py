"""Caffe's learning-rate policies as a pure function, and loss.csv / loss.png."""
from __future__ import annotations

import math

import pytest

from frcnn.train_history import (LossHistory, LRSchedule, learning_rate, multistep_index,
                                 smooth)


def lr(policy: str, iteration: int, **fields) -> float:
    return learning_rate(LRSchedule(lr_policy=policy, **fields), iteration)


def test_learning_rate_matches_hand_computed_values():
    assert lr("fixed", 12345, base_lr=0.01) == 0.01
    step = dict(base_lr=0.01, gamma=0.1, stepsize=100)
    assert [lr("step", i, **step) for i in (0, 99, 100, 199, 250)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 0.0001], rel=1e-12)
    assert lr("exp", 3, base_lr=1.0, gamma=0.5) == 0.125
    assert lr("inv", 10000, base_lr=0.01, gamma=1e-4, power=0.75) == pytest.approx(
        0.01 * 2 ** -0.75, rel=1e-12)
    multi = dict(base_lr=1.0, gamma=0.1, stepvalue=(10, 20))
    assert [lr("multistep", i, **multi) for i in (0, 9, 10, 19, 20, 1000)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01], rel=1e-12)
    poly = dict(base_lr=1.0, power=2.0, max_iter=100)
    assert [lr("poly", i, **poly) for i in (0, 50, 100)] == [1.0, 0.25, 0.0]
    assert lr("sigmoid", 10, base_lr=1.0, gamma=1.0, stepsize=10) == 0.5
    assert lr("sigmoid", 12, base_lr=1.0, gamma=1.0, stepsize=10) == pytest.approx(
        1 / (1 + math.exp(-2)))


def test_multistep_moves_one_step_an_update_as_caffe_does():
    # Caffe advances current_step_ by at most one per update: equal step values take two
    assert [multistep_index((10, 10), i) for i in (9, 10, 11, 12)] == [0, 1, 2, 2]
    assert [multistep_index((5, 3), i) for i in (4, 5, 6)] == [0, 1, 2]
    assert multistep_index((), 100) == 0


def test_schedule_from_a_solver_and_unknown_policies():
    from types import SimpleNamespace

    solver = SimpleNamespace(lr_policy="step", base_lr=0.001, gamma=0.1, power=0.0,
                             stepsize=6, stepvalue=[], max_iter=8)
    s = LRSchedule.from_solver(solver)
    assert (learning_rate(s, 5), learning_rate(s, 6)) == pytest.approx((0.001, 0.0001))
    with pytest.raises(ValueError, match="unknown lr_policy 'cosine'"):
        lr("cosine", 1)
    with pytest.raises(ValueError, match="positive stepsize"):
        lr("step", 1, stepsize=0)


def test_smooth_is_a_trailing_mean():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth([2.0], 5) == [2.0]


def history(rows: int) -> LossHistory:
    h = LossHistory(["rpn_cls_loss", "cls_loss"])
    for i in range(1, rows + 1):
        h.add(i, {"cls_loss": 1.0 / i, "rpn_cls_loss": 0.1 + 1e-17 * i}, 0.001 * 0.1 ** (i // 4),
              0.25 * i)
    return h


def test_csv_round_trips_exactly_and_a_resume_drops_later_rows(tmp_path):
    h = history(9)
    csv_path = tmp_path / "loss.csv"
    assert h.write(csv_path) == [csv_path]
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "iteration,rpn_cls_loss,cls_loss,total,lr,seconds"
    assert lines[1] == f"1,{0.1 + 1e-17!r},1.0,{0.1 + 1e-17 + 1.0!r},0.001,0.25"
    assert len(lines) == 10
    again = LossHistory(["rpn_cls_loss", "cls_loss"])
    assert again.load(csv_path, up_to=6) == 6
    assert again.rows == h.rows[:6]  # floats read back exactly
    assert again.seconds == 1.5
    assert LossHistory(["rpn_cls_loss", "cls_loss"]).load(tmp_path / "none.csv", 3) == 0
    with pytest.raises(ValueError, match=r"loss\.csv: its columns"):
        LossHistory(["other_loss"]).load(csv_path, up_to=6)
    csv_path.write_text(lines[0] + "\n1,x,2,3,4,5\n")
    with pytest.raises(ValueError, match=r"loss\.csv, line 2"):
        again.load(csv_path, up_to=6)


def test_plot_is_a_png_with_content(tmp_path):
    pytest.importorskip("matplotlib")
    h = history(30)
    written = h.write(tmp_path / "loss.csv", tmp_path / "loss.png")
    assert written == [tmp_path / "loss.csv", tmp_path / "loss.png"]
    data = (tmp_path / "loss.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
