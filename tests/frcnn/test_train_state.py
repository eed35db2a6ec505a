"""Train states for exact resumes (frcnn.train_state), the data source's state, model
records and writable-folder checks."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from frcnn.data.minibatch import BlobSettings, MinibatchSource
from frcnn.fileio import check_writable
from frcnn.model_files import check_model_record, file_sha256
from frcnn.train_state import (global_rng_states, iteration_seed, latest_complete_snapshot,
                               read_train_state, rng_state, set_global_rng_states,
                               set_rng_state, train_state_path, write_train_state)


def json_round_trip(value):
    return json.loads(json.dumps(value))


def test_generator_state_round_trips_through_json():
    rng = np.random.default_rng(5)
    rng.random(7)
    state = json_round_trip(rng_state(rng))
    expected = rng.random(4)
    other = np.random.default_rng(99)
    set_rng_state(other, state)
    np.testing.assert_array_equal(other.random(4), expected)
    mt = np.random.Generator(np.random.MT19937(1))  # a bit generator with an array state
    mt_state = json_round_trip(rng_state(mt))
    expected = mt.integers(0, 1000, 5)
    set_rng_state(mt, mt_state)
    np.testing.assert_array_equal(mt.integers(0, 1000, 5), expected)
    with pytest.raises(ValueError, match="of PCG64, but the generator is MT19937"):
        set_rng_state(mt, state)


def test_global_generators_round_trip():
    np.random.seed(1)
    random.seed(2)
    saved = json_round_trip(global_rng_states())
    expected = (np.random.rand(3).tolist(), [random.random() for _ in range(3)])
    np.random.seed(42)
    random.seed(43)
    set_global_rng_states(saved)
    assert (np.random.rand(3).tolist(), [random.random() for _ in range(3)]) == expected


def test_iteration_seed_is_fixed_per_iteration_and_fits_32_bits():
    seeds = [iteration_seed(3, i) for i in range(100)]
    assert seeds == [iteration_seed(3, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2 ** 32 for s in seeds)
    assert iteration_seed(4, 0) != iteration_seed(3, 0)


def roidb(n: int) -> list[dict]:
    return [{"id": i, "width": 40 + 30 * (i % 2), "height": 50} for i in range(n)]


def draws(source: MinibatchSource, n: int) -> list:
    return [source.next() for _ in range(n)]


def test_a_source_continues_from_its_state_across_epochs():
    def build(entries, rng):  # what a minibatch depends on: the image and a random draw
        return (entries[0]["id"], float(rng.random()))

    a = MinibatchSource(roidb(5), BlobSettings(), seed=3, build=build)
    draws(a, 7)  # into the second epoch
    state = json_round_trip(a.get_state())
    expected = draws(a, 9)
    b = MinibatchSource(roidb(5), BlobSettings(), seed=3, build=build)
    b.set_state(state)
    assert draws(b, 9) == expected
    assert b.epoch == a.epoch
    with pytest.raises(ValueError, match="roidb of 5 entries but this one has 4"):
        MinibatchSource(roidb(4), BlobSettings(), seed=3, build=build).set_state(state)


def test_latest_complete_snapshot_skips_an_incomplete_one(tmp_path):
    for it in (3, 6, 12):
        (tmp_path / f"net_iter_{it}.solverstate").write_bytes(b"s")
    write_train_state(train_state_path(tmp_path / "net_iter_3.solverstate"),
                      {"iteration": 3, "layers": {}})
    write_train_state(train_state_path(tmp_path / "net_iter_6.solverstate"),
                      {"iteration": 6, "layers": {}})
    (tmp_path / "other_iter_9.solverstate").write_bytes(b"s")  # another prefix
    write_train_state(train_state_path(tmp_path / "other_iter_9.solverstate"),
                      {"iteration": 9, "layers": {}})
    found = latest_complete_snapshot(tmp_path, "net")
    assert found.iteration == 6 and found.solverstate.name == "net_iter_6.solverstate"
    assert found.train_state.name == "net_iter_6.frcnn-state.json"
    assert latest_complete_snapshot(tmp_path).iteration == 9
    assert latest_complete_snapshot(tmp_path / "missing", "net") is None
    assert read_train_state(found.train_state)["iteration"] == 6


def test_a_damaged_train_state_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "x_iter_1.frcnn-state.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"x_iter_1\.frcnn-state\.json: not a train state"):
        read_train_state(path)
    path.write_text(json.dumps({"format": 1, "iteration": "1", "layers": {}}))
    with pytest.raises(ValueError, match="valid 'iteration'"):
        read_train_state(path)


def test_model_record_catches_truncated_and_edited_files(tmp_path):
    model = tmp_path / "m.caffemodel"
    model.write_bytes(bytes(range(256)) * 4)
    meta = {"model_bytes": 1024, "model_sha256": file_sha256(model)}
    check_model_record(model, meta)
    check_model_record(model, None)
    model.write_bytes(bytes(range(256)) * 3)
    with pytest.raises(ValueError, match=r"m\.caffemodel is 768 bytes but its sidecar says 1024"):
        check_model_record(model, meta)
    edited = bytearray(bytes(range(256)) * 4)
    edited[500] ^= 1
    model.write_bytes(bytes(edited))
    with pytest.raises(ValueError, match=r"m\.caffemodel: its sha256 .* changed after training"):
        check_model_record(model, meta)


def test_an_unwritable_folder_is_an_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=r"output folder .*file/out is not writable"):
        check_writable(blocker / "out")
    assert check_writable(tmp_path / "a" / "b").is_dir()
    assert not list((tmp_path / "a" / "b").iterdir())  # the probe is gone


def test_atomic_files_get_the_permissions_of_an_ordinary_file(tmp_path):
    import os
    import stat

    from frcnn.fileio import write_atomic

    old = os.umask(0o027)
    try:
        path = write_atomic(tmp_path / "f.txt", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # not mkstemp's 0600
