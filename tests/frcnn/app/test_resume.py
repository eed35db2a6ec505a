"""Crash-safe training: a killed or interrupted run resumes exactly; unwritable output,
a failing snapshot and an edited model are clear errors."""
from __future__ import annotations

import csv
import errno
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from frcnn import config
from frcnn.app.training import TrainRequest, run_train
from frcnn.train_state import find_snapshots, latest_complete_snapshot
from tests.tiny_synth import SMALL, write_tiny_synth

ITERS, EVERY = 8, 3
PREFIX = "squeezenet_faster_rcnn"


def request(data: Path, out: Path, **changes) -> TrainRequest:
    fields = dict(net="squeezenet/faster_rcnn_end2end", dataset="synth_train", root=str(data),
                  iters=ITERS, out=str(out), set_pairs=SMALL, base_lr=0.001, scales=(1.5, 3),
                  iter_size=1, snapshot_iters=EVERY, display=1)
    return TrainRequest(**{**fields, **changes})


def cli_args(data: Path, out: Path) -> list[str]:
    return ["train", "--dataset", "synth_train", "--root", str(data), "--iters", str(ITERS),
            "--snapshot-iters", str(EVERY), "--display", "1", "--base-lr", "0.001",
            "--scales", "1.5,3", "--iter-size", "1", "--out", str(out), "--set", *SMALL]


def train(req: TrainRequest) -> str:
    with config.preserved():
        return run_train(req)


def history(out: Path) -> list[list[str]]:
    """loss.csv without its seconds column (the wall clock differs between runs)."""
    with open(out / "loss.csv", newline="") as f:
        return [row[:-1] for row in csv.reader(f)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_tiny_synth(root, 6, 1)
    return root


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run: its folder and loss history."""
    out = tmp_path_factory.mktemp("reference")
    train(request(data, out, force=True))
    rows = history(out)
    assert [int(r[0]) for r in rows[1:]] == list(range(1, ITERS + 1))
    return out, rows


class Run:
    """``frcnn train`` in a subprocess, its stdout read line by line."""

    def __init__(self, args: list[str], log: Path):
        env = dict(os.environ, GLOG_minloglevel="1")
        self.stderr_path = log
        self._stderr = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "frcnn.cli", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._guard = threading.Timer(300, self.proc.kill)  # a hang guard, not a timing check
        self._guard.start()
        self.lines: list[str] = []

    def wait_for_iteration(self, iteration: int) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("[train] iter "):
                if int(line.split()[2].split("/")[0]) >= iteration:
                    return
        raise AssertionError(f"the run ended before iteration {iteration}: "
                             f"{''.join(self.lines)}{self.stderr_path.read_text()}")

    def finish(self) -> tuple[int, str]:
        self.lines.extend(self.proc.stdout)
        code = self.proc.wait()
        self._guard.cancel()
        self._stderr.close()
        return code, self.stderr_path.read_text()


def check_state_folder(state: Path) -> None:
    """Every solver state under its final name is whole and names existing weights."""
    from caffe.proto import caffe_pb2

    for snap in find_snapshots(state):
        parsed = caffe_pb2.SolverState()
        parsed.ParseFromString(snap.solverstate.read_bytes())
        assert parsed.iter == snap.iteration
        assert Path(parsed.learned_net).parent == state
        assert Path(parsed.learned_net).is_file()


def test_a_killed_run_resumes_with_the_same_losses(data, reference, tmp_path):
    _, expected = reference
    kill_at = random.randint(EVERY + 1, ITERS - 1)  # after the first snapshot
    out = tmp_path / "killed"
    run = Run(cli_args(data, out), tmp_path / "stderr.txt")
    run.wait_for_iteration(kill_at)
    run.proc.kill()  # SIGKILL: no handler runs
    code, _ = run.finish()
    assert code == -signal.SIGKILL
    found = latest_complete_snapshot(out / "state", PREFIX)
    assert found is not None and found.iteration >= EVERY, f"killed at {kill_at}"
    check_state_folder(out / "state")
    train(request(data, out, resume="auto"))
    assert history(out) == expected, f"killed after iteration {kill_at}"


def test_sigint_writes_a_snapshot_and_says_how_to_resume(data, reference, tmp_path):
    _, expected = reference
    out = tmp_path / "interrupted"
    run = Run(cli_args(data, out), tmp_path / "stderr.txt")
    run.wait_for_iteration(EVERY + 1)  # between snapshots
    run.proc.send_signal(signal.SIGINT)
    code, stderr = run.finish()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert "SIGINT: training stopped at iteration" in stderr
    assert "resume with: frcnn train" in stderr and stderr.rstrip().endswith("--resume auto")
    stopped = int(stderr.split("stopped at iteration ")[1].split()[0])
    assert EVERY < stopped < ITERS
    found = latest_complete_snapshot(out / "state", PREFIX)
    assert found.iteration == stopped
    assert (out / f"{PREFIX}_iter_{stopped}.caffemodel").is_file()
    assert not list((out / "state" / ".partial").iterdir())
    assert [int(r[0]) for r in history(out)[1:]] == list(range(1, stopped + 1))
    train(request(data, out, resume="auto"))  # from a snapshot off the regular ones
    assert history(out) == expected


def test_sigterm_in_process_stops_after_a_snapshot(data, reference, tmp_path, monkeypatch):
    import frcnn.train as train_module
    from frcnn.train import TrainingInterrupted

    original = train_module.Trainer._losses

    def losses(self):
        if self.solver.iter == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: stop after this iteration
        return original(self)

    monkeypatch.setattr(train_module.Trainer, "_losses", losses)
    with pytest.raises(TrainingInterrupted, match="SIGTERM: training stopped at iteration 2"
                       ) as info:
        train(request(data, tmp_path / "t"))
    assert info.value.exit_code == 143
    assert latest_complete_snapshot(tmp_path / "t" / "state", PREFIX).iteration == 2
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers put back


def test_an_unwritable_output_folder_fails_before_training(data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"output folder .*a-file/run is not writable"):
        train(request(data, blocker / "run"))
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            with pytest.raises(OSError, match="locked is not writable"):
                train(request(data, locked))
        finally:
            locked.chmod(0o755)


def test_a_failing_snapshot_names_the_path_and_keeps_the_earlier_ones(data, tmp_path,
                                                                      monkeypatch):
    import frcnn.train as train_module

    original = train_module.save_net_atomically

    def disk_full_at_the_second(net, path):
        if "_iter_6." in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(net, path)

    monkeypatch.setattr(train_module, "save_net_atomically", disk_full_at_the_second)
    out = tmp_path / "full"
    with pytest.raises(OSError, match=r"cannot write the snapshot of iteration 6 \(.*"
                                      r"_iter_6\.caffemodel\): No space left on device.*"
                                      r"earlier snapshots are intact .*_iter_3\.caffemodel"):
        train(request(data, out))
    assert latest_complete_snapshot(out / "state", PREFIX).iteration == 3
    check_state_folder(out / "state")
    assert not list((out / "state" / ".partial").iterdir())


def test_an_edited_model_is_a_clear_error_not_an_abort(reference, tmp_path):
    out, _ = reference
    model = out / f"{PREFIX}_iter_{ITERS}.caffemodel"
    edited = out / "edited.caffemodel"  # beside it: the sidecar's relative paths still hold
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    edited.write_bytes(bytes(data))
    Path(str(edited) + ".frcnn.json").write_text(Path(str(model) + ".frcnn.json").read_text())
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "frcnn.cli", "detect", "--model", str(edited),
                           str(image), "--out", str(tmp_path / "d")], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, GLOG_minloglevel="1"))
    assert proc.returncode == 1, proc.stderr  # an error exit, not Caffe's abort
    assert "edited.caffemodel: its sha256" in proc.stderr and "Traceback" not in proc.stderr
    edited.write_bytes(model.read_bytes()[:-10])  # truncated
    from frcnn.app.runs import model_context

    with pytest.raises(ValueError, match=r"edited\.caffemodel is \d+ bytes but its sidecar"):
        model_context(edited)
