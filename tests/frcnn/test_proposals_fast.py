"""The fast proposal path (partial selection, subset decode, key sort, early-stopping NMS)
returns exactly what the straightforward pipeline returns: same rois, same order."""
from __future__ import annotations


import numpy as np
import pytest

from frcnn import proposals
from frcnn.anchors import generate_anchors, shifted_anchors
from frcnn.proposals import ProposalParams, proposals_from_rpn
from frcnn.testing import NumpyBlob, make_layer
from tests.frcnn.test_proposals import _straightforward

A = 9
TEST = ProposalParams(pre_nms_top_n=6000, post_nms_top_n=300, nms_thresh=0.7, min_size=16)
TRAIN = ProposalParams(pre_nms_top_n=12000, post_nms_top_n=2000, nms_thresh=0.7, min_size=16)


def _peaked(rng, height, width, clusters=6):
    """(1, A, H, W) float32 fg probabilities: mostly low, a few high clusters."""
    margin = rng.normal(-4.0, 1.5, size=(A, height, width))
    ys, xs = np.mgrid[0:height, 0:width]
    for _ in range(clusters):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(1, 4)
        bump = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r * r))
        margin[rng.choice(A, size=2, replace=False)] += rng.uniform(6, 10) * bump
    return (1.0 / (1.0 + np.exp(-margin)))[None].astype(np.float32)


def _inputs(rng, height, width, peaked=True, sigma=0.2):
    scores = _peaked(rng, height, width) if peaked else \
        rng.uniform(size=(1, A, height, width)).astype(np.float32)
    deltas = rng.normal(0, sigma, size=(1, 4 * A, height, width)).astype(np.float32)
    anchors = shifted_anchors(generate_anchors(), height, width, 16)
    im_info = np.array([height * 16.0, width * 16.0, 1.6])
    return scores, deltas, anchors, im_info


def _assert_same(scores, deltas, anchors, im_info, p):
    boxes, s = proposals_from_rpn(scores, deltas, anchors, im_info, p)
    ref_boxes, ref_s = _straightforward(scores, deltas, anchors, im_info, p)
    assert boxes.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_array_equal(boxes, ref_boxes)
    np.testing.assert_array_equal(s, ref_s)
    return boxes, s


@pytest.fixture
def decode_calls(monkeypatch):
    """Counts the rounds of candidate decoding (1: the first guess was enough)."""
    calls = []
    original = proposals._decode_and_filter

    def spy(cand, *args, **kwargs):
        calls.append(None if cand is None else len(cand))
        return original(cand, *args, **kwargs)

    monkeypatch.setattr(proposals, "_decode_and_filter", spy)
    return calls


@pytest.mark.parametrize("seed", range(6))
def test_random_peaked_cases_small_top_n(seed, decode_calls):
    rng = np.random.default_rng(seed)
    scores, deltas, anchors, im_info = _inputs(rng, 20 + seed, 30 + 2 * seed, peaked=seed % 2 == 0)
    p = ProposalParams(pre_nms_top_n=int(rng.integers(50, 1500)),
                       post_nms_top_n=int(rng.integers(10, 300)),
                       nms_thresh=float(rng.choice([0.5, 0.7, 0.9])), min_size=16)
    _assert_same(scores, deltas, anchors, im_info, p)
    assert decode_calls[0] is not None  # a partial selection, not all anchors


def test_test_settings_on_the_600_by_1000_map(decode_calls):
    rng = np.random.default_rng(10)
    boxes, _ = _assert_same(*_inputs(rng, 38, 63), TEST)
    assert len(boxes) == 300
    assert decode_calls[0] is not None and decode_calls[0] < 38 * 63 * A


def test_train_settings_on_the_600_by_1000_map():
    rng = np.random.default_rng(11)
    boxes, _ = _assert_same(*_inputs(rng, 38, 63), TRAIN)
    assert len(boxes) == 2000


@pytest.mark.parametrize("levels", [2, 5, 50])
def test_ties_quantised_scores(levels):
    """Many equal scores, also at the partial selection's cut: ties by lower anchor index."""
    rng = np.random.default_rng(levels)
    scores, deltas, anchors, im_info = _inputs(rng, 24, 32)
    scores = (np.floor(scores * levels) / levels).astype(np.float32)
    for pre, post in ((700, 100), (3000, 500), (TEST.pre_nms_top_n, TEST.post_nms_top_n)):
        p = ProposalParams(pre_nms_top_n=pre, post_nms_top_n=post, nms_thresh=0.7, min_size=16)
        _assert_same(scores, deltas, anchors, im_info, p)


def test_all_scores_equal():
    rng = np.random.default_rng(3)
    scores, deltas, anchors, im_info = _inputs(rng, 16, 20)
    scores[...] = 0.5
    _assert_same(scores, deltas, anchors, im_info,
                 ProposalParams(pre_nms_top_n=400, post_nms_top_n=60, nms_thresh=0.7))


def test_negative_and_signed_zero_scores():
    """Not probabilities, but the order must still be the stable sort's (-0.0 == 0.0)."""
    rng = np.random.default_rng(4)
    scores, deltas, anchors, im_info = _inputs(rng, 16, 20)
    scores = rng.choice(np.array([-2.5, -1.0, -0.0, 0.0, 0.25, 3.0], np.float32),
                        size=scores.shape).astype(np.float32)
    _assert_same(scores, deltas, anchors, im_info,
                 ProposalParams(pre_nms_top_n=500, post_nms_top_n=80, nms_thresh=0.6))


def test_descending_order_matches_a_stable_sort():
    rng = np.random.default_rng(5)
    for values in (rng.normal(size=5000).astype(np.float32),
                   rng.integers(-3, 4, size=5000).astype(np.float32),
                   np.array([0.0, -0.0, 1.0, -0.0, 0.0, -1.0, np.float32(1e-45)], np.float32),
                   np.zeros(0, np.float32),
                   rng.normal(size=300)):  # float64: the stable-argsort branch
        np.testing.assert_array_equal(proposals._descending_order(values),
                                      np.argsort(-values, kind="stable"))


def test_nothing_survives_the_size_filter_gives_empty(decode_calls):
    rng = np.random.default_rng(6)
    scores, deltas, anchors, im_info = _inputs(rng, 20, 30)
    p = ProposalParams(pre_nms_top_n=300, post_nms_top_n=50, min_size=1000)
    boxes, s = _assert_same(scores, deltas, anchors, im_info, p)
    assert boxes.shape == (0, 4) and s.shape == (0,)
    assert decode_calls[-1] is None  # widened until every anchor was decoded


def test_empty_feature_map():
    scores = np.zeros((1, A, 0, 7), np.float32)
    deltas = np.zeros((1, 4 * A, 0, 7), np.float32)
    anchors = shifted_anchors(generate_anchors(), 0, 7, 16)
    boxes, s = proposals_from_rpn(scores, deltas, anchors, np.array([100.0, 112.0, 1.0]), TEST)
    assert boxes.shape == (0, 4) and s.shape == (0,)
    assert boxes.dtype == np.float32 and s.dtype == np.float32


def test_pre_nms_top_n_larger_than_the_anchors(decode_calls):
    rng = np.random.default_rng(7)
    scores, deltas, anchors, im_info = _inputs(rng, 10, 12)  # 1080 anchors
    p = ProposalParams(pre_nms_top_n=5000, post_nms_top_n=200, nms_thresh=0.7)
    _assert_same(scores, deltas, anchors, im_info, p)
    assert decode_calls == [None]
    unlimited = ProposalParams(pre_nms_top_n=0, post_nms_top_n=200, nms_thresh=0.7)
    for got, want in zip(proposals_from_rpn(scores, deltas, anchors, im_info, unlimited),
                         proposals_from_rpn(scores, deltas, anchors, im_info, p)):
        np.testing.assert_array_equal(got, want)


def test_post_nms_top_n_larger_than_what_nms_keeps():
    rng = np.random.default_rng(8)
    scores, deltas, anchors, im_info = _inputs(rng, 20, 25)
    p = ProposalParams(pre_nms_top_n=800, post_nms_top_n=100000, nms_thresh=0.5)
    boxes, _ = _assert_same(scores, deltas, anchors, im_info, p)
    assert 0 < len(boxes) < 800
    unlimited = ProposalParams(pre_nms_top_n=800, post_nms_top_n=0, nms_thresh=0.5)
    np.testing.assert_array_equal(
        proposals_from_rpn(scores, deltas, anchors, im_info, unlimited)[0], boxes)


@pytest.mark.parametrize("shrunk, keep_every, partial", [
    (0.3, 0, False), (0.7, 0, False), (0.97, 0, False),  # widened to every anchor
    (0.3, 2, True), (0.3, 3, True)])  # widened by the pass rate, still a partial selection
def test_size_filter_removing_the_best_scored_forces_widening(shrunk, keep_every, partial,
                                                              decode_calls):
    """Top-scored anchors are shrunk below min_size (all of the best `shrunk` fraction, or
    all but every `keep_every`-th), so the first candidate set has too few survivors and
    the selection must widen."""
    rng = np.random.default_rng(int(shrunk * 100) + keep_every)
    scores, deltas, anchors, im_info = _inputs(rng, 30, 40)
    flat = scores[0].transpose(1, 2, 0).reshape(-1)  # anchor order
    best = np.argsort(-flat, kind="stable")[:int(shrunk * flat.size)]
    if keep_every:
        best = best[np.arange(len(best)) % keep_every != 0]
    hw, a = np.divmod(best, A)
    h, w = np.divmod(hw, 40)
    for c in (2, 3):  # dw = dh = -4: boxes about 1/55 of the anchor's size
        deltas[0, 4 * a + c, h, w] = -4.0
    p = ProposalParams(pre_nms_top_n=600, post_nms_top_n=150, nms_thresh=0.7, min_size=16)
    _assert_same(scores, deltas, anchors, im_info, p)
    assert len(decode_calls) >= 2
    assert (decode_calls[-1] is not None) == partial


def test_float64_blobs():
    rng = np.random.default_rng(9)
    scores, deltas, anchors, im_info = _inputs(rng, 18, 22)
    _assert_same(scores.astype(np.float64), deltas.astype(np.float64), anchors, im_info,
                 ProposalParams(pre_nms_top_n=700, post_nms_top_n=120, nms_thresh=0.7))



@pytest.mark.parametrize("phase", ["TEST", "TRAIN"])
def test_the_layer_equals_the_straightforward_pipeline(phase, cfg):
    """The real ProposalLayer with the default cfg of each phase on a 600 x 1000 input."""
    from rpn.proposal_layer import ProposalLayer

    rng = np.random.default_rng(12)
    fg, deltas, anchors, im_info = _inputs(rng, 38, 63)
    probs = np.concatenate([1 - fg, fg], axis=1)
    layer = make_layer(ProposalLayer, "'feat_stride': 16", phase=phase)
    bottom = [NumpyBlob(probs), NumpyBlob(deltas), NumpyBlob(im_info[None])]
    top = [NumpyBlob(), NumpyBlob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    c = cfg[phase]
    p = ProposalParams(c.RPN_PRE_NMS_TOP_N, c.RPN_POST_NMS_TOP_N, c.RPN_NMS_THRESH,
                       c.RPN_MIN_SIZE)
    ref_boxes, ref_s = _straightforward(bottom[0].data[:, A:], bottom[1].data, anchors,
                                        bottom[2].data[0].astype(np.float64), p)
    np.testing.assert_array_equal(top[0].data[:, 0], 0)
    np.testing.assert_array_equal(top[0].data[:, 1:], ref_boxes)
    np.testing.assert_array_equal(top[1].data[:, 0], ref_s)
    assert len(ref_boxes) == c.RPN_POST_NMS_TOP_N
