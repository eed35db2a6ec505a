"""frcnn.proposals on hand-made maps: the minimum-size filter at its tie, the scale, top-N
limits, input checks, adjacent float32 scores, and the documented candidate counts of the
fast path (first guess pre_nms_top_n * 1.125 + 256, everything from 3/4 of the anchors on,
widening by the observed pass rate, at least doubling)."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.proposals import ProposalParams, _descending_order, proposals_from_rpn
from tests.frcnn.test_proposals import _straightforward
from tests.frcnn.test_proposals_fast import decode_calls  # noqa: F401  (a fixture)


def _blobs(anchors, scores):
    """A 1 x N map with one anchor per position: (1, 1, 1, N) scores, zero deltas."""
    n = len(anchors)
    return (np.asarray(scores, np.float32).reshape(1, 1, 1, n),
            np.zeros((1, 4, 1, n), np.float32), np.asarray(anchors, np.float64))


def test_defaults_are_py_faster_rcnns_test_settings():
    assert ProposalParams() == ProposalParams(pre_nms_top_n=6000, post_nms_top_n=300,
                                              nms_thresh=0.7, min_size=16)


def test_minimum_size_tie_in_width_and_height_and_the_scale():
    # zero deltas decode [x1, y1, x2, y2] to [x1, y1, x2 + 1, y2 + 1]: widths x2 - x1 + 2
    anchors = [[0, 0, 14, 14],      # 16 x 16: passes min_size 16 (a tie)
               [40, 0, 53, 54],     # 15 wide: fails
               [80, 0, 134, 13],    # 15 high: fails
               [0, 80, 29, 109]]    # 31 x 31
    scores, deltas, anchors = _blobs(anchors, [0.9, 0.8, 0.7, 0.6])
    p = ProposalParams(pre_nms_top_n=10, post_nms_top_n=10, nms_thresh=0.7, min_size=16)
    boxes, s = proposals_from_rpn(scores, deltas, anchors, np.array([200.0, 200.0, 1.0]), p)
    np.testing.assert_array_equal(boxes, [[0, 0, 15, 15], [0, 80, 30, 110]])
    np.testing.assert_array_equal(s, np.float32([0.9, 0.6]))
    # scale 2: min_size 8 becomes 16 pixels of the input blob: the same result
    p8 = ProposalParams(pre_nms_top_n=10, post_nms_top_n=10, nms_thresh=0.7, min_size=8)
    boxes8, _ = proposals_from_rpn(scores, deltas, anchors, np.array([200.0, 200.0, 2.0]), p8)
    np.testing.assert_array_equal(boxes8, boxes)
    # scale 1.9375: 15.5 pixels, so the 15-pixel sides fail still
    boxes8, _ = proposals_from_rpn(scores, deltas, anchors, np.array([200, 200, 1.9375]), p8)
    np.testing.assert_array_equal(boxes8, boxes)


def test_boxes_are_clipped_before_the_size_filter():
    # [190, 0, 219, 29] decodes to x2 220, clipped to 199: 10 wide, below 16
    scores, deltas, anchors = _blobs([[190, 0, 219, 29], [0, 0, 29, 29]], [0.9, 0.8])
    p = ProposalParams(pre_nms_top_n=10, post_nms_top_n=10, min_size=16)
    boxes, s = proposals_from_rpn(scores, deltas, anchors, np.array([100.0, 200.0, 1.0]), p)
    np.testing.assert_array_equal(boxes, [[0, 0, 30, 30]])


def test_top_n_before_and_after_nms():
    # four far-apart boxes and one duplicate of the best (suppressed by it)
    anchors = [[0, 0, 19, 19], [50, 0, 69, 19], [100, 0, 119, 19], [150, 0, 169, 19],
               [0, 0, 19, 19]]
    scores, deltas, anchors = _blobs(anchors, [0.5, 0.9, 0.7, 0.3, 0.8])
    im_info = np.array([100.0, 200.0, 1.0])

    def run(pre, post):
        p = ProposalParams(pre_nms_top_n=pre, post_nms_top_n=post, nms_thresh=0.7, min_size=1)
        return proposals_from_rpn(scores, deltas, anchors, im_info, p)[1].tolist()

    f = np.float32
    assert run(0, 0) == [f(0.9), f(0.8), f(0.7), f(0.3)]   # 0.5 is 0.8's duplicate
    assert run(-1, -1) == run(0, 0)
    assert run(3, 0) == [f(0.9), f(0.8), f(0.7)]            # before NMS: 0.9 0.8 0.7
    assert run(4, 0) == [f(0.9), f(0.8), f(0.7)]            # 0.5 suppressed
    assert run(5, 2) == [f(0.9), f(0.8)]
    assert run(5, 1) == [f(0.9)]
    assert run(1, 5) == [f(0.9)]


def test_input_checks():
    scores, deltas, anchors = _blobs([[0, 0, 19, 19], [50, 0, 69, 19]], [0.5, 0.9])
    im_info = np.array([100.0, 200.0, 1.0])
    p = ProposalParams()
    with pytest.raises(ValueError, match=r"^3 anchors but 2 scores and 2 deltas: the RPN blobs"):
        proposals_from_rpn(scores, deltas, np.vstack([anchors, anchors[:1]]), im_info, p)
    with pytest.raises(ValueError, match=r"^2 anchors but 2 scores and 1 deltas"):
        proposals_from_rpn(scores, deltas[:, :, :, :1], anchors, im_info, p)
    with pytest.raises(ValueError, match=r"^2 anchors but 2 scores and -1 deltas"):
        proposals_from_rpn(scores, deltas[0], anchors, im_info, p)
    for bad in (np.nan, np.inf):
        s = scores.copy()
        s[0, 0, 0, 1] = bad
        with pytest.raises(ValueError, match="rpn scores contain NaN or inf"):
            proposals_from_rpn(s, deltas, anchors, im_info, p)
        d = deltas.copy()
        d[0, 3, 0, 0] = bad
        with pytest.raises(ValueError, match="rpn_bbox_pred contains NaN or inf"):
            proposals_from_rpn(scores, d, anchors, im_info, p)


def test_descending_order_of_adjacent_float32_values():
    one = np.float32(1)
    up = np.nextafter(one, np.float32(2))
    down = np.nextafter(one, np.float32(0))
    neg = -one
    neg_up = np.nextafter(neg, np.float32(0))
    values = np.array([down, up, one, neg, neg_up, up, np.float32(0), -np.float32(0)],
                      np.float32)
    assert _descending_order(values).tolist() == [1, 5, 2, 0, 6, 7, 4, 3]


# ----------------------------------------------------------------------------- fast path

def _map(n, big, seed=0):
    """n anchors on a 1 x n map, distinct float32 scores (descending by index), zero deltas;
    anchor i is 20 x 20 where big[i], else 3 x 3 (under min_size 8 once decoded)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 900, (n, 2))
    side = np.where(big, 19.0, 2.0)
    anchors = np.hstack([xy, xy + side[:, None]])
    scores = (1.0 - np.arange(n) / n).astype(np.float32)
    return _blobs(anchors, scores)


IM = np.array([1000.0, 1000.0, 1.0])


def _same(scores, deltas, anchors, p):
    boxes, s = proposals_from_rpn(scores, deltas, anchors, IM, p)
    ref_boxes, ref_s = _straightforward(scores, deltas, anchors, IM, p)
    np.testing.assert_array_equal(boxes, ref_boxes)
    np.testing.assert_array_equal(s, ref_s)


def test_first_guess_of_candidates(decode_calls):
    scores, deltas, anchors = _map(1000, np.ones(1000, bool))
    p = ProposalParams(pre_nms_top_n=100, post_nms_top_n=50, nms_thresh=0.7, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls == [int(100 * 1.125) + 256] == [368]


def test_everything_is_decoded_from_three_quarters_of_the_anchors_on(decode_calls):
    # pre_nms_top_n 306: 344 + 256 = 600 candidates = 0.75 * 800
    scores, deltas, anchors = _map(800, np.ones(800, bool))
    p = ProposalParams(pre_nms_top_n=306, post_nms_top_n=50, nms_thresh=0.7, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls[0] is None
    decode_calls.clear()
    scores, deltas, anchors = _map(801, np.ones(801, bool))
    _same(scores, deltas, anchors, p)
    assert decode_calls[0] == 600


def test_exactly_enough_survivors_stop_after_one_round(decode_calls):
    big = np.zeros(2000, bool)
    big[np.arange(0, 368, 368 // 100)[:100]] = True  # 100 of the 368 candidates pass
    big[368:] = True
    scores, deltas, anchors = _map(2000, big)
    p = ProposalParams(pre_nms_top_n=100, post_nms_top_n=1000, nms_thresh=1.0, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls == [368]


def test_widening_by_the_pass_rate(decode_calls):
    # 46 of the first 368 pass: rate 0.125, so 100 / 0.125 * 1.125 + 256 = 1156 next
    big = np.zeros(2000, bool)
    big[np.arange(0, 368, 8)] = True
    big[368:] = True
    scores, deltas, anchors = _map(2000, big)
    p = ProposalParams(pre_nms_top_n=100, post_nms_top_n=1000, nms_thresh=1.0, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls == [368, 1156]


def test_widening_at_least_doubles(decode_calls):
    # 92 of 368 pass: 100 / 0.25 * 1.125 + 256 = 706 < 2 * 368
    big = np.zeros(2000, bool)
    big[np.arange(0, 368, 4)] = True
    big[368:] = True
    scores, deltas, anchors = _map(2000, big)
    p = ProposalParams(pre_nms_top_n=100, post_nms_top_n=1000, nms_thresh=1.0, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls == [368, 736]


def test_no_survivor_among_the_first_widens_to_everything(decode_calls):
    big = np.zeros(2000, bool)
    big[368:] = True
    scores, deltas, anchors = _map(2000, big)
    p = ProposalParams(pre_nms_top_n=100, post_nms_top_n=1000, nms_thresh=1.0, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls == [368, None]


def test_widening_with_a_low_pass_rate(decode_calls):
    # 19 of the first 368 pass: 100 / (19 / 368) * 1.125 + 256 = 2434 candidates next,
    # still a partial selection (below 0.75 * 6000), and enough
    big = np.zeros(6000, bool)
    big[np.arange(0, 6000, 20)] = True
    scores, deltas, anchors = _map(6000, big)
    p = ProposalParams(pre_nms_top_n=100, post_nms_top_n=1000, nms_thresh=1.0, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls == [368, 2434]


def test_no_survivor_among_the_first_of_many_anchors_widens_by_one_per_candidate(
        decode_calls):
    # no survivor among 368: the rate counts 1 survivor (1 / 368), so 100 * 368 * 1.125 + 256
    # = 41656 candidates next, still below 3/4 of the 60000 anchors
    big = np.ones(60000, bool)
    big[:368] = False
    scores, deltas, anchors = _map(60000, big)
    p = ProposalParams(pre_nms_top_n=100, post_nms_top_n=50, nms_thresh=0.7, min_size=8)
    _same(scores, deltas, anchors, p)
    assert decode_calls == [368, 41656]
