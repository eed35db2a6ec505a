"""frcnn.deploy.parity: detections paired by position, not by rank."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.deploy.parity import compare_images, paired_differences


def _d(*rows):
    return np.array(rows, float).reshape(-1, 5)


def test_a_swap_of_near_tied_scores_is_no_difference():
    ref = _d([0, 0, 10, 10, 0.9000001], [50, 50, 60, 60, 0.9])
    other = _d([50, 50, 60.0001, 60, 0.9000002], [0, 0, 10, 10, 0.9000001])
    box, score = paired_differences(ref, other)
    assert box == pytest.approx(1e-4) and score == pytest.approx(2e-7)


def test_a_real_difference_is_reported():
    box, score = paired_differences(_d([0, 0, 10, 10, 0.9]), _d([3, 0, 10, 12, 0.5]))
    assert (box, score) == (3.0, pytest.approx(0.4))
    assert paired_differences(_d(), _d([0, 0, 1, 1, 1])) == (0.0, 0.0)


def test_each_other_row_is_paired_once():
    # both reference rows are nearest to the first other row; the second takes the rest
    box, _ = paired_differences(_d([0, 0, 10, 10, 1], [1, 0, 10, 10, 1]),
                                _d([0, 0, 10, 10, 1], [40, 0, 50, 10, 1]))
    assert box == 40.0


def test_compare_images_measures_the_images_with_the_same_counts():
    ref = [[_d([0, 0, 1, 1, 1]), _d([0, 0, 10, 10, 0.9])],
           [_d(), _d([5, 5, 9, 9, 0.8], [50, 50, 60, 60, 0.1])]]
    other = [[_d(), _d([0, 0, 10, 11, 0.9])],
             [_d(), _d([40, 40, 45, 45, 0.3])]]         # image 1: one detection fewer
    r = compare_images(ref, other)
    assert r == {"images": 2, "images_same_counts": 1, "detections": 3,
                 "max_box_diff": 1.0, "max_score_diff": 0.0}
    with pytest.raises(ValueError, match="2 images of reference detections but 1"):
        compare_images(ref, other[:1])
