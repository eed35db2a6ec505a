"""NMS: the Cython kernel (both scan methods), the dispatcher and the CUDA kernel all
return exactly what the numpy reference returns."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import frcnn.nms as fnms
from frcnn.nms import nms, nms_cpu, nms_reference

cpu_nms = pytest.importorskip("frcnn._native.cpu_nms", reason="Cython extension not built")

BRUTE, GRID = 1, 2
HAS_GPU = "gpu" in fnms.available_backends()
GPU_REASON = ("CUDA extension not built" if fnms._gpu_nms is None
              else "no CUDA device present")


def random_dets(rng: np.random.Generator, n: int, dtype=np.float32, kind: str = "uniform",
                size: float = 1000.0) -> np.ndarray:
    """Random (n, 5) dets of several kinds, chosen to hit ties and edge cases."""
    if kind == "grid":  # few distinct corners: duplicates, ties, exact IoU values
        x1 = rng.integers(0, 6, n) * 4.0
        y1 = rng.integers(0, 6, n) * 4.0
        w = rng.integers(0, 5, n) * 4.0  # width 0 => x2 = x1 - 1: zero area
        h = rng.integers(0, 5, n) * 4.0
        scores = rng.integers(0, 4, n) / 4.0
    elif kind == "cluster":  # proposals around a few objects: heavy suppression
        centres = rng.uniform(0, size, (max(1, n // 50), 2))
        c = centres[rng.integers(0, len(centres), n)]
        w = rng.uniform(10, 200, n)
        h = rng.uniform(10, 200, n)
        x1 = c[:, 0] - w / 2 + rng.normal(0, 5, n)
        y1 = c[:, 1] - h / 2 + rng.normal(0, 5, n)
        scores = rng.random(n)
    elif kind == "tiny":  # small boxes far from the origin: rounding-sensitive
        x1 = 1e5 + rng.uniform(0, 50, n)
        y1 = 1e5 + rng.uniform(0, 50, n)
        w = rng.uniform(0.0, 3.0, n)
        h = rng.uniform(0.0, 3.0, n)
        scores = np.round(rng.random(n), 1)
    else:
        x1 = rng.uniform(0, size, n)
        y1 = rng.uniform(0, size * 0.6, n)
        w = rng.uniform(1, size * 0.3, n)
        h = rng.uniform(1, size * 0.3, n)
        scores = rng.random(n)
    dets = np.stack([x1, y1, x1 + w - 1, y1 + h - 1, scores], axis=1)
    return dets.astype(dtype)


def cpu_method(dets: np.ndarray, thresh: float, method: int, max_keep: int = -1) -> np.ndarray:
    order = np.argsort(-dets[:, 4], kind="stable")
    boxes = np.ascontiguousarray(dets[order])
    return order[cpu_nms.nms_sorted(boxes, thresh, max_keep, method)]


# ------------------------------------------------------------------ examples

def test_simple_example():
    dets = np.array([[0, 0, 9, 9, 0.9],
                     [1, 1, 10, 10, 0.8],    # IoU with 0 = 81 / 119 = 0.68
                     [20, 20, 29, 29, 0.7],
                     [0, 0, 9, 9, 0.95]], np.float32)
    for f in (nms, nms_cpu, nms_reference):
        np.testing.assert_array_equal(f(dets, 0.5), [3, 2])
        np.testing.assert_array_equal(f(dets, 0.7), [3, 1, 2])
        assert f(dets, 0.5).dtype == np.int64


def test_iou_equal_to_thresh_is_not_suppressed():
    # inter 50, union 100: IoU exactly 0.5.
    dets = np.array([[0, 0, 9, 9, 1.0], [0, 0, 9, 4, 0.5]], np.float64)
    for f in (nms_cpu, nms_reference):
        np.testing.assert_array_equal(f(dets, 0.5), [0, 1])
        np.testing.assert_array_equal(f(dets, 0.49), [0])


def test_ties_broken_by_lower_index():
    dets = np.array([[0, 0, 9, 9, 0.5]] * 4 + [[50, 50, 60, 60, 0.5]], np.float32)
    for f in (nms, nms_cpu, nms_reference):
        np.testing.assert_array_equal(f(dets, 0.3), [0, 4])
        np.testing.assert_array_equal(f(dets, 1.0), [0, 1, 2, 3, 4])


def test_threshold_zero_and_one():
    rng = np.random.default_rng(1)
    dets = random_dets(rng, 300)
    # thresh 1: only IoU > 1 would suppress, which never happens.
    np.testing.assert_array_equal(nms_cpu(dets, 1.0), np.argsort(-dets[:, 4], kind="stable"))
    keep0 = nms_cpu(dets, 0.0)
    np.testing.assert_array_equal(keep0, nms_reference(dets, 0.0))
    from frcnn.boxes import bbox_overlaps
    ov = bbox_overlaps(dets[keep0, :4], dets[keep0, :4])
    assert (ov[~np.eye(len(keep0), dtype=bool)] == 0).all()  # kept boxes never touch


def test_zero_area_boxes_are_kept():
    dets = np.array([[0, 0, 9, 9, 0.9], [3, 3, 2, 2, 0.8], [5, 5, 4, 9, 0.7],
                     [5, 5, 4, 9, 0.6]], np.float32)  # widths 0: never overlap
    for f in (nms, nms_cpu, nms_reference):
        np.testing.assert_array_equal(f(dets, 0.0), [0, 1, 2, 3])


def test_empty_and_max_keep_edges():
    empty = np.zeros((0, 5), np.float32)
    for f in (nms, nms_cpu, nms_reference):
        out = f(empty, 0.7)
        assert out.shape == (0,) and out.dtype == np.int64
    dets = random_dets(np.random.default_rng(2), 50)
    full = nms_reference(dets, 0.5)
    for f in (nms, nms_cpu, nms_reference):
        assert f(dets, 0.5, max_keep=0).shape == (0,)
        np.testing.assert_array_equal(f(dets, 0.5, max_keep=10 ** 6), full)
        np.testing.assert_array_equal(f(dets, 0.5, max_keep=3), full[:3])


def test_accepts_float64_and_noncontiguous():
    dets = random_dets(np.random.default_rng(3), 200, np.float64)
    wide = np.zeros((200, 7))
    wide[:, 1:6] = dets
    view = wide[:, 1:6]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(nms(view, 0.6), nms_reference(dets, 0.6))


def test_visit_order_is_the_stable_descending_order(monkeypatch):
    rng = np.random.default_rng(8)
    for trial in range(600):
        n = int(rng.integers(0, 300))
        levels = int(rng.integers(1, 500))
        scores = (rng.integers(0, levels, n) / 7.0).astype(np.float32 if trial % 2 else np.float64)
        if trial % 5 == 0:
            scores[rng.random(n) < 0.3] *= -0.0  # -0.0 ties with 0.0
        expected = np.argsort(-scores, kind="stable")
        np.testing.assert_array_equal(fnms._visit_order(scores), expected)
        monkeypatch.setattr(fnms, "_MAX_TIE_FIXES", 0)  # the all-stable path
        np.testing.assert_array_equal(fnms._visit_order(scores), expected)
        monkeypatch.undo()


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("f", [nms, nms_cpu, nms_reference])
def test_bad_input_raises_value_error(f):
    good = np.array([[0, 0, 9, 9, 0.5]], np.float32)
    with pytest.raises(ValueError, match="dets.*shape"):
        f(np.zeros((3, 4), np.float32), 0.5)
    with pytest.raises(ValueError, match="dets.*shape"):
        f(np.zeros(5, np.float32), 0.5)
    with pytest.raises(ValueError, match="dets.*float32 or float64"):
        f(np.zeros((3, 5), np.int64), 0.5)
    with pytest.raises(ValueError, match="dets.*float32 or float64"):
        f(np.zeros((3, 5), np.float16), 0.5)
    nan_score = good.copy()
    nan_score[0, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        f(nan_score, 0.5)
    nan_box = np.repeat(good, 3, axis=0)
    nan_box[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\[2\]"):
        f(nan_box, 0.5)
    inf_box = good.copy()
    inf_box[0, 2] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        f(inf_box, 0.5)
    for bad in (-0.1, 1.5, float("nan"), "x", None):
        with pytest.raises(ValueError, match="thresh"):
            f(good, bad)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="max_keep"):
            f(good, 0.5, max_keep=bad)


# ------------------------------------------------------------------ CPU == reference

KINDS = ["uniform", "grid", "cluster", "tiny"]


def test_cpu_matches_reference_on_many_random_cases():
    """Thousands of random cases, both scan methods, both dtypes, several thresholds."""
    rng = np.random.default_rng(1234)
    cases = 0
    for trial in range(1500):
        kind = KINDS[trial % len(KINDS)]
        dtype = np.float32 if trial % 2 else np.float64
        n = int(rng.integers(0, 120))
        dets = random_dets(rng, n, dtype, kind)
        thresh = float(rng.choice([0.0, 1.0, 0.5, 0.7, rng.random()]))
        max_keep = None if trial % 3 else int(rng.integers(0, 40))
        ref = nms_reference(dets, thresh, max_keep=max_keep)
        mk = -1 if max_keep is None else max_keep
        if n:
            for method in (BRUTE, GRID):
                got = cpu_method(dets, thresh, method, mk)
                np.testing.assert_array_equal(got, ref, err_msg=f"{trial=} {kind=} {method=}")
        np.testing.assert_array_equal(nms_cpu(dets, thresh, max_keep=max_keep), ref)
        cases += 1
    assert cases == 1500


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("thresh", [0.3, 0.7, 0.95])
def test_grid_matches_brute_and_reference_on_large_inputs(kind, thresh):
    rng = np.random.default_rng(7)
    dets = random_dets(rng, 2500, np.float32, kind)
    ref = nms_reference(dets, thresh)
    np.testing.assert_array_equal(cpu_method(dets, thresh, BRUTE), ref)
    np.testing.assert_array_equal(cpu_method(dets, thresh, GRID), ref)
    np.testing.assert_array_equal(nms_cpu(dets, thresh), ref)  # automatic choice
    np.testing.assert_array_equal(nms_cpu(dets, thresh, max_keep=300), ref[:300])


def test_huge_coordinates_match_reference():
    rng = np.random.default_rng(11)
    for scale in (1e20, 1e36, 1e150, 1e300):
        dets = random_dets(rng, 400, np.float64)
        dets[:, :4] *= scale / 1000  # areas overflow to inf for the largest scales
        if scale < 1e38:
            dets32 = dets.astype(np.float32)
            np.testing.assert_array_equal(nms_cpu(dets32, 0.5), nms_reference(dets32, 0.5))
        for method in (BRUTE, GRID):
            np.testing.assert_array_equal(cpu_method(dets, 0.5, method), nms_reference(dets, 0.5))


coords = st.integers(-3, 12).map(lambda v: v * 2.5)


@st.composite
def dets_strategy(draw):
    n = draw(st.integers(0, 40))
    rows = []
    for _ in range(n):
        x1, y1 = draw(coords), draw(coords)
        w, h = draw(st.integers(-1, 8)), draw(st.integers(-1, 8))  # -1..0: degenerate
        score = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, -1.0]))
        rows.append([x1, y1, x1 + 2.5 * w - 1, y1 + 2.5 * h - 1, score])
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return np.array(rows, dtype=dtype).reshape(n, 5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dets=dets_strategy(),
       thresh=st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.25]), st.floats(0, 1)),
       max_keep=st.one_of(st.none(), st.integers(0, 50)))
def test_property_cpu_equals_reference(dets, thresh, max_keep):
    ref = nms_reference(dets, thresh, max_keep=max_keep)
    np.testing.assert_array_equal(nms_cpu(dets, thresh, max_keep=max_keep), ref)
    if len(dets):
        mk = -1 if max_keep is None else max_keep
        np.testing.assert_array_equal(cpu_method(dets, thresh, GRID, mk), ref)
    # Greedy invariants: sorted by score, a prefix of the unlimited result, and (in
    # float64, where bbox_overlaps computes the same IoU) kept boxes pairwise <= thresh.
    assert (np.diff(dets[ref, 4]) <= 0).all()
    full = nms_reference(dets, thresh)
    np.testing.assert_array_equal(ref, full[:len(ref)])
    if dets.dtype == np.float64 and len(full) > 1:
        from frcnn.boxes import bbox_overlaps
        ov = bbox_overlaps(dets[full, :4], dets[full, :4])
        assert (ov[np.triu_indices(len(full), 1)] <= thresh).all()


# ------------------------------------------------------------------ backend choice

def _ours(caught):
    """Warnings frcnn.nms raised (it raises none: a fallback is one stderr line)."""
    return [w for w in caught if "frcnn" in str(w.filename) or "nms" in str(w.message)]


def test_backends_and_the_auto_default_is_silent(monkeypatch, capsys):
    backends = fnms.available_backends()
    assert backends[-2:] == ("cpu", "numpy")
    dets = random_dets(np.random.default_rng(4), 30)
    monkeypatch.setattr(fnms, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = nms(dets, 0.5)  # device_id None: automatic
            assert_same = np.testing.assert_array_equal
            assert_same(out, nms_reference(dets, 0.5))
            assert_same(nms(dets, 0.5, device_id=fnms.nms_device("auto", 0)), out)
            assert_same(nms(dets, 0.5, device_id=fnms.nms_device(False, 0)), out)
        nms(dets, 0.5, device_id=-1)  # explicit CPU: never warns
    assert caught == []
    assert capsys.readouterr().err == ""


def test_nms_device_follows_the_cfg():
    assert fnms.nms_device(False, 0) == -1
    assert fnms.nms_device(False, 3) == -1
    assert fnms.nms_device(True, 0) == 0
    assert fnms.nms_device(True, 2) == 2  # asked for: nms itself falls back (and says so)
    assert fnms.nms_device("auto", 0) == (0 if HAS_GPU else -1)
    assert fnms.nms_device("auto", 99) == -1  # no such device: the CPU, silently
    for bad in ("yes", 1, None, "gpu"):
        with pytest.raises(ValueError, match="True, False or 'auto'"):
            fnms.nms_device(bad, 0)


def test_default_cfg_builds_and_runs_the_proposal_path_silently(capsys):
    from frcnn import config
    from frcnn.proposals import ProposalParams, proposals_from_rpn

    c = config.default_config()
    assert c.USE_GPU_NMS == "auto"
    rng = np.random.default_rng(8)
    a, h, w = 9, 4, 5
    anchors = rng.uniform(0, 60, (h * w * a, 2))
    anchors = np.hstack([anchors, anchors + rng.uniform(8, 40, (h * w * a, 2))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proposals_from_rpn(rng.random((1, a, h, w)).astype(np.float32),
                           rng.normal(0, 0.1, (1, 4 * a, h, w)).astype(np.float32),
                           anchors.astype(np.float32), np.array([80.0, 100.0, 1.0]),
                           ProposalParams(100, 20, 0.7, 4),
                           device_id=fnms.nms_device(c.USE_GPU_NMS, c.GPU_ID))
    assert caught == []
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(HAS_GPU, reason="needs a machine without a usable GPU")
def test_gpu_asked_for_without_one_says_so_once_per_process(monkeypatch, capsys):
    dets = random_dets(np.random.default_rng(4), 30)
    monkeypatch.setattr(fnms, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = nms(dets, 0.5, device_id=fnms.nms_device(True, 0))
            np.testing.assert_array_equal(out, nms_reference(dets, 0.5))
            nms(dets, 0.5, device_id=0)
    assert _ours(caught) == []  # a plain line, not a warning with a source line
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("frcnn.nms: USE_GPU_NMS is True")
    assert err[0].endswith("; using the CPU")
    assert "no CUDA device" in err[0] or "not built" in err[0]
    nms(dets, 0.5, device_id=0)
    assert capsys.readouterr().err == ""  # once per process
    monkeypatch.setattr(fnms, "_warned", set())  # a new process
    nms(dets, 0.5, device_id=0)
    assert capsys.readouterr().err.count("USE_GPU_NMS is True") == 1


def test_missing_gpu_device_falls_back_to_cpu(monkeypatch, capsys):
    dets = random_dets(np.random.default_rng(5), 40)
    monkeypatch.setattr(fnms, "_warned", set())
    out = nms(dets, 0.5, device_id=99)
    assert capsys.readouterr().err.count("\n") == 1
    np.testing.assert_array_equal(out, nms_reference(dets, 0.5))


def test_numpy_fallback_when_cython_missing(monkeypatch, capsys):
    dets = random_dets(np.random.default_rng(6), 40)
    monkeypatch.setattr(fnms, "_cpu_nms", None)
    monkeypatch.setattr(fnms, "_warned", set())
    out = nms(dets, 0.5, device_id=-1)
    nms(dets, 0.5, device_id=-1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "numpy reference" in err[0]
    np.testing.assert_array_equal(out, nms_reference(dets, 0.5))
    with pytest.raises(RuntimeError, match="not built"):
        nms_cpu(dets, 0.5)


def test_gpu_module_imports_without_a_device():
    if fnms._gpu_nms is None:
        pytest.skip("CUDA extension not built")
    assert fnms._gpu_nms.device_count() >= 0  # never raises, even without a driver
    if not HAS_GPU:
        with pytest.raises(RuntimeError, match="GPU NMS unavailable"):
            fnms.nms_gpu(np.zeros((1, 5), np.float32), 0.5)


# ------------------------------------------------------------------ GPU == reference

@pytest.mark.skipif(not HAS_GPU, reason=GPU_REASON)
def test_gpu_matches_reference():
    rng = np.random.default_rng(99)
    for trial in range(300):
        kind = KINDS[trial % len(KINDS)]
        dtype = np.float32 if trial % 2 else np.float64
        n = int(rng.integers(0, 300)) if trial % 10 else 3000
        dets = random_dets(rng, n, dtype, kind)
        thresh = float(rng.choice([0.0, 1.0, 0.5, 0.7, rng.random()]))
        max_keep = None if trial % 3 else int(rng.integers(0, 100))
        ref = nms_reference(dets, thresh, max_keep=max_keep)
        np.testing.assert_array_equal(fnms.nms_gpu(dets, thresh, max_keep=max_keep), ref,
                                      err_msg=f"{trial=} {kind=}")
        np.testing.assert_array_equal(nms(dets, thresh, max_keep=max_keep), ref)


@pytest.mark.skipif(not HAS_GPU, reason=GPU_REASON)
@settings(max_examples=200, deadline=None)
@given(dets=dets_strategy(), thresh=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
def test_property_gpu_equals_reference(dets, thresh):
    np.testing.assert_array_equal(fnms.nms_gpu(dets, thresh), nms_reference(dets, thresh))
