"""frcnn.diagnostics on hand-made cases: every expected number is worked out in the comments.

Boxes are inclusive pixels: [0, 0, 9, 9] is 10 x 10 = 100 pixels.  Reference boxes used below:
A = [0, 0, 9, 9] (area 100); [0, 0, 9, 4] (area 50, inside A) has IoU 50 / 100 = 0.5 with A
exactly, [0, 0, 9, 6] (area 70) IoU 0.7 exactly (both exact in floating point).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from frcnn import diagnostics as D
from frcnn.evaluation import evaluate

A = [0, 0, 9, 9]
IOU_05 = [0, 0, 9, 4]
IOU_07 = [0, 0, 9, 6]
FAR = [50, 50, 60, 60]
PNG = b"\x89PNG\r\n\x1a\n"


def record(boxes, classes=None, difficult=None):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    classes = np.ones(len(boxes), np.int32) if classes is None else np.array(classes, np.int32)
    out = {"boxes": boxes, "gt_classes": classes}
    if difficult is not None:
        out["difficult"] = np.array(difficult, bool)
    return out


def dets(*rows):
    return np.array(rows, np.float32).reshape(-1, 5)


NONE = dets()


# ----------------------------------------------------------------------------- proposal recall

def test_recall_counts_a_tie_at_the_threshold_and_cuts_at_top_n():
    records = [record([A]),                                  # im0: one gt
               record([A, [20, 20, 29, 29]]),                # im1: two gt, no proposals
               record([]),                                   # im2: no gt
               record([A], difficult=[True])]                # im3: only a difficult gt
    proposals = [np.array([FAR, IOU_05, IOU_07], np.float32),
                 np.zeros((0, 4), np.float32),
                 np.array([FAR], np.float32),
                 np.array([IOU_07], np.float32)]
    r = D.proposal_recall(proposals, records, ious=(0.5, 0.7), top_n=(1, 2, 3))
    # 3 gt count (im0's and im1's two; im3's is difficult).  Top 1: im0 has only FAR -> 0.
    # Top 2: FAR, IoU 0.5 -> recalled at 0.5 (>=, a tie), not at 0.7.  Top 3: IoU 0.7 ->
    # recalled at both.  im1's two gt have no proposal at any N.
    assert r["num_gt"] == 3 and r["images"] == 4
    assert r["recall"] == {"1": {"0.5": 0.0, "0.7": 0.0},
                           "2": {"0.5": pytest.approx(1 / 3), "0.7": 0.0},
                           "3": {"0.5": pytest.approx(1 / 3), "0.7": pytest.approx(1 / 3)}}
    # produced 3, 0, 1, 1: mean 1.25; used min(N, produced): N=1 -> 1,0,1,1 (0.75),
    # N=2 -> 2,0,1,1 (1.0), N=3 -> 3,0,1,1 (1.25)
    assert r["proposals_per_image"] == {"mean": 1.25, "min": 0, "max": 3}
    assert r["proposals_used"] == {"1": 0.75, "2": 1.0, "3": 1.25}
    assert r["source"] == "rpn"


def test_recall_matches_proposals_to_gt_one_to_one():
    # A and B = [0, 0, 9, 8] (area 90) both overlap the one proposal A: IoU 1 and 0.9.  One
    # to one, the proposal goes to A; B is left with nothing: recall 1 / 2 at any threshold.
    r = D.proposal_recall([np.array([A], np.float32)], [record([A, [0, 0, 9, 8]])],
                          ious=(0.5,), top_n=(10,))
    assert r["recall"]["10"]["0.5"] == 0.5
    # a second proposal equal to B recovers it: 2 / 2
    r = D.proposal_recall([np.array([A, [0, 0, 9, 8]], np.float32)],
                          [record([A, [0, 0, 9, 8]])], ious=(0.5,), top_n=(10,))
    assert r["recall"]["10"]["0.5"] == 1.0


def test_matched_overlaps_takes_the_best_pair_first():
    # proposal 0 = [0, 0, 9, 8]: IoU 0.9 with A, 1.0 with B = [0, 0, 9, 8];
    # proposal 1 = IOU_07: IoU 0.7 with A, 70 / 90 with B.  Best pair (0, B) = 1.0 first, then
    # (1, A) = 0.7.
    got = D.matched_overlaps(np.array([[0, 0, 9, 8], IOU_07]), np.array([A, [0, 0, 9, 8]]))
    np.testing.assert_allclose(got, [0.7, 1.0])
    assert D.matched_overlaps(np.zeros((0, 4)), np.array([A])).tolist() == [0.0]
    assert D.matched_overlaps(np.array([A]), np.zeros((0, 4))).shape == (0,)


def test_recall_of_images_without_gt_is_nan_and_the_evaluator_resets():
    r = D.proposal_recall([np.array([A], np.float32), np.zeros((0, 4))],
                          [record([]), record([])], ious=(0.5,), top_n=(5,))
    assert r["num_gt"] == 0 and math.isnan(r["recall"]["5"]["0.5"])
    ev = D.ProposalRecallEvaluator(ious=(0.5,), top_n=(5,), source="given")
    ev.process(record([A]), np.array([A]))
    ev.process(record([A]), None)                 # a backend without proposals: skipped
    first = ev.evaluate()
    assert first["recall"]["5"]["0.5"] == 1.0 and first["images_without_proposals"] == 1
    assert first["source"] == "given"
    ev.reset()
    after = ev.evaluate()
    assert after["images"] == 0 and after["num_gt"] == 0
    with pytest.raises(ValueError):
        D.proposal_recall([np.zeros((0, 4))], [record([]), record([])])


# ----------------------------------------------------------------------------- size buckets

def box(w, h):
    return [0, 0, w - 1, h - 1]


def test_size_buckets_at_the_boundaries():
    boxes = np.array([box(1, 1), box(31, 32), box(32, 32), box(16, 64), box(95, 96),
                      box(96, 96), box(300, 200)], np.float64)
    # sqrt(area): 1, sqrt(992) < 32, 32 (medium: lower bound inclusive), sqrt(1024) = 32,
    # sqrt(9120) < 96, 96 (large), 245
    assert D.size_buckets(boxes).tolist() == [0, 0, 1, 1, 1, 2, 2]
    # thresholds of one's own: 10 and 20 -> 9x10 small, 10x10 medium, 19x20 medium, 20x20 large
    own = np.array([box(9, 10), box(10, 10), box(19, 20), box(20, 20)], np.float64)
    assert D.size_buckets(own, (10, 20)).tolist() == [0, 1, 1, 2]
    assert D.size_buckets(np.zeros((0, 4))).shape == (0,)
    info = D.size_thresholds_info((10, 20))
    assert info["small"] == [0.0, 10.0] and info["medium"] == [10.0, 20.0]
    assert info["large"] == [20.0, None]
    for bad in ((96, 32), (0, 10), (32,), (32, float("inf"))):
        with pytest.raises(ValueError, match="size thresholds"):
            D.size_buckets(boxes, bad)


S = box(20, 20)                      # small: sqrt(400) = 20
L = [100, 100, 199, 199]             # large: 100 x 100
SMALL_FP = [300, 300, 319, 319]      # small, overlaps nothing
LARGE_FP = [300, 0, 399, 99]         # large, overlaps nothing


def size_case():
    classes = ["__background__", "a"]
    records = [record([S, L])]
    all_dets = [[NONE], [dets(L + [0.9], SMALL_FP + [0.8], S + [0.7], LARGE_FP + [0.6])]]
    return all_dets, records, classes


def test_ap_by_size_ignores_other_buckets_gt_and_their_false_positives():
    all_dets, records, classes = size_case()
    r = D.ap_by_size(all_dets, records, classes, use_07_metric=True)
    # all: TP FP TP FP, 2 gt: recall .5 .5 1 1, precision 1 .5 2/3 .5.  VOC07: recall >= 0 ..
    # 0.5 (6 points) max precision 1; 0.6 .. 1.0 (5 points) 2/3: (6 + 5 * 2/3) / 11 = 28/33
    assert r["ap"]["all"]["a"] == pytest.approx(28 / 33)
    # small: the detection of L is matched to an ignored gt; the large FP is ignored:
    # FP (small) then TP: precision at recall 1 is 0.5 -> every point 0.5
    assert r["ap"]["small"]["a"] == pytest.approx(0.5)
    # large: TP (L); the small FP ignored; the detection of S matched to an ignored gt;
    # the large FP counts: recall 1 at precision 1 -> 1
    assert r["ap"]["large"]["a"] == pytest.approx(1.0)
    assert math.isnan(r["ap"]["medium"]["a"]) and math.isnan(r["ap"]["medium"]["mAP"])
    assert r["num_gt"] == {"all": {"a": 2, "total": 2}, "small": {"a": 1, "total": 1},
                           "medium": {"a": 0, "total": 0}, "large": {"a": 1, "total": 1}}
    area = D.ap_by_size(all_dets, records, classes, use_07_metric=False)
    # area under the envelope: 0.5 * 1 + 0.5 * 2/3 = 5/6
    assert area["ap"]["all"]["a"] == pytest.approx(5 / 6)
    assert area["ap"]["small"]["a"] == pytest.approx(0.5)


def test_a_true_positive_stays_one_though_its_own_box_is_in_another_bucket():
    # gt 32 x 32 (medium, sqrt(area) 32), detection 31 x 32 (small, sqrt(992)) with IoU
    # 992 / 1024 > 0.5: a TP of the medium bucket; no FP -> AP 1
    classes = ["__background__", "a"]
    r = D.ap_by_size([[NONE], [dets(box(31, 32) + [0.9])]], [record([box(32, 32)])], classes)
    assert r["ap"]["medium"]["a"] == pytest.approx(1.0) == r["ap"]["all"]["a"]
    assert math.isnan(r["ap"]["small"]["a"])


def test_ap_by_size_all_bucket_is_the_voc_evaluation():
    rng = np.random.default_rng(3)
    classes = ["__background__", "a", "b"]
    records, per_class = [], [[], [], []]
    for _ in range(12):
        g = int(rng.integers(0, 4))
        xy = rng.uniform(0, 150, (g, 2)).round()
        boxes = np.hstack([xy, xy + rng.uniform(10, 120, (g, 2)).round()])
        records.append(record(boxes, rng.integers(1, 3, g), rng.random(g) < 0.2))
        for c in (1, 2):
            n = int(rng.integers(0, 5))
            src = boxes[rng.integers(0, g, n)] if g else np.tile([5.0, 5, 40, 40], (n, 1))
            jittered = src + rng.normal(0, 6, (n, 4))
            jittered[:, 2:] = np.maximum(jittered[:, 2:], jittered[:, :2] + 1)
            per_class[c].append(np.hstack([jittered, rng.random((n, 1)).round(1)]))
    all_dets = [[NONE] * 12, per_class[1], per_class[2]]
    for use_07 in (True, False):
        ref = evaluate(all_dets, records, classes, use_07_metric=use_07)
        got = D.ap_by_size(all_dets, records, classes, use_07_metric=use_07)["ap"]["all"]
        for k in ref:
            assert got[k] == pytest.approx(ref[k], nan_ok=True)


# ----------------------------------------------------------------------------- false positives

G1 = [0, 0, 99, 99]          # class a, large (100 x 100)
G2 = [200, 0, 299, 99]       # class b, large
G3 = [0, 200, 19, 219]       # class a, small (20 x 20), never detected
DIFF = [500, 0, 599, 99]     # class a, difficult


def fp_case():
    classes = ["__background__", "a", "b"]
    records = [record([G1, G2, G3, DIFF], [1, 2, 1, 1], [False, False, False, True])]
    a = dets(DIFF + [0.95],               # matched to a difficult gt: neither TP nor FP
             G1 + [0.9],                  # TP
             [0, 0, 99, 89, 0.8],         # IoU 0.9 with G1, already matched: a duplicate
             [0, 0, 49, 99, 0.7],         # IoU 0.5 with G1: not > 0.5 -> localisation
             [0, 0, 9, 99, 0.65],         # IoU 0.1 with G1 exactly -> localisation
             G2 + [0.85],                 # on class b's box -> confusion
             [0, 0, 8, 99, 0.55],         # IoU 0.09 with G1, nothing else -> background
             [400, 400, 449, 449, 0.5],   # overlaps nothing -> background
             [400, 400, 449, 449, 0.4])   # below the score threshold: not counted
    return [[NONE], [a], [NONE]], records, classes


def test_false_positive_kinds_one_of_each():
    all_dets, records, classes = fp_case()
    r = D.false_positives(all_dets, records, classes, score_thresh=0.5)
    assert r["per_class"]["a"] == {"detections": 7, "tp": 1, "localisation": 3, "confusion": 1,
                                   "background": 2, "missed": 1, "confused_with": {"b": 1}}
    assert r["per_class"]["b"] == {"detections": 0, "tp": 0, "localisation": 0, "confusion": 0,
                                   "background": 0, "missed": 1, "confused_with": {}}
    assert r["total"] == {"detections": 7, "tp": 1, "localisation": 3, "confusion": 1,
                          "background": 2, "missed": 2}
    # 6 false positives: 3 localisation, 1 confusion, 2 background
    assert r["fractions"] == pytest.approx({"localisation": 0.5, "confusion": 1 / 6,
                                            "background": 1 / 3})
    # missed: G3 (small) of class a, G2 (large) of class b; G1 found; DIFF not counted
    assert r["missed"]["selection"] == {"small": 1, "medium": 0, "large": 1, "total": 2}
    assert r["missed"]["any_detection"] == {"small": 1, "medium": 0, "large": 1, "total": 2}
    assert r["num_gt"] == {"small": 1, "medium": 0, "large": 2, "total": 3}
    assert r["selection"] == "detections with score >= 0.5"


def test_false_positives_of_the_top_n_per_class():
    all_dets, records, classes = fp_case()
    r = D.false_positives(all_dets, records, classes)
    # class a has 2 non-difficult gt: its top 2 detections after the one on DIFF (neither
    # TP nor FP) are the TP (0.9) and the one on class b's box (0.85)
    assert r["total"] == {"detections": 2, "tp": 1, "localisation": 0, "confusion": 1,
                          "background": 0, "missed": 2}
    assert r["fractions"]["confusion"] == 1.0
    assert r["selection"].startswith("top N detections per class")


def test_misses_within_the_cut_and_over_every_detection_differ():
    # one gt of class a, small: the top-1 detection is a FP, the second finds it
    classes = ["__background__", "a"]
    records = [record([S])]
    all_dets = [[NONE], [dets(FAR + [0.9], S + [0.8])]]
    r = D.false_positives(all_dets, records, classes)
    assert r["missed"]["selection"]["small"] == 1
    assert r["missed"]["any_detection"]["small"] == 0
    # FAR = [50, 50, 60, 60] overlaps nothing: background
    assert r["total"]["background"] == 1


# ----------------------------------------------------------------------------- tables, summary

def report():
    all_dets, records, classes = fp_case()
    rep = {"ap_voc07": evaluate(all_dets, records, classes),
           "proposal_recall": D.proposal_recall([np.array([G1, G2], np.float32)], records),
           **D.diagnose(all_dets, records, classes)}
    return json.loads(json.dumps(rep))           # as read back from eval.json


def test_tables_state_the_thresholds():
    text = D.format_diagnostics(report())
    assert "small < 32, medium 32-96, large >= 96" in text
    assert "RPN proposal recall (best objectness first" in text and "IoU0.7" in text
    assert "False positives by kind" in text and "missed at this cut" in text
    # only 2 proposals produced: recall at N = 50, 100, 300 is flagged as fewer
    assert "50*" in text and "fewer proposals produced" in text


def test_error_summary_says_where_the_errors_are():
    text = D.error_summary(report())
    lines = text.splitlines()
    # proposals G1 and G2 recall 2 of the 3 gt (G3 has none)
    assert lines[0] == "RPN proposals: recall@100 IoU0.5 0.67, IoU0.7 0.67 (2 used per image)"
    assert lines[1].startswith("weakest class: b AP 0.00")
    # the top-N cut: the one false positive is on class b's box
    assert lines[3] == ("false positives (1 in the top-N): 100% confusion, 0% localisation, "
                        "0% background; most confused: a detections on b objects (1)")
    assert ("misses: 2 of 3 objects never detected, mostly small and large (small 1/1, "
            "medium 0/0, large 1/2)") in text
    assert D.error_summary({}) == ""


# ----------------------------------------------------------------------------- PR curves

def test_pr_curves_are_written_per_class(tmp_path):
    all_dets, records, classes = fp_case()
    classes = ["__background__", "a", "traffic light", "c"]   # c: no gt, no detections
    all_dets = all_dets + [[NONE]]
    paths = D.write_pr_curves(tmp_path / "out", all_dets, records, classes)
    assert [p.name for p in paths] == ["pr_a.png", "pr_traffic_light.png", "pr_c.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 1000
