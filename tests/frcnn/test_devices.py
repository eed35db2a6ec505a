"""frcnn.devices: --gpu parsing, the checks before Caffe is asked, and the messages."""
from __future__ import annotations

import pytest

from frcnn import cli, config, devices
from frcnn.devices import Gpu, GpuError

CUDA_BUILD = {"cuda": {"version": "13.0", "source": "pip", "archs": ["75", "80", "86", "90",
                                                                      "100", "120"],
                       "ptx": "120", "cudnn": False}}
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 81559)
L4 = Gpu(1, "NVIDIA L4", (8, 9), 22478)


@pytest.fixture(autouse=True)
def cpu_after():
    yield
    devices._selected = None


@pytest.mark.parametrize("text, ids", [(None, []), ("-1", []), ("cpu", []), (-1, []),
                                       ("0", [0]), (2, [2]), ("0,1", [0, 1]), (" 1 ", [1]),
                                       ("1,1", [1])])
def test_parse_gpu(text, ids):
    assert devices.parse_gpu(text) == ids


@pytest.mark.parametrize("text", ["gpu0", "0;1", "1.5", "-2"])
def test_parse_gpu_rejects_what_is_not_an_id(text):
    with pytest.raises(ValueError, match="expected a device id"):
        devices.parse_gpu(text)


def test_the_cpu_needs_no_check():
    assert devices.check_gpus([], {}, []) is None


def test_a_gpu_on_a_cpu_build_says_how_to_build_for_the_gpu():
    with pytest.raises(GpuError, match=r"--gpu 0: this Caffe is a CPU-only build.*"
                                       r"FRCNN_CUDA=pip \./install\.sh"):
        devices.check_gpus([0], {"cuda": None}, [H100])


def test_a_cuda_build_without_a_device_names_the_reason():
    with pytest.raises(GpuError, match="--gpu 0: no CUDA device: no NVIDIA driver.*runs on the "
                                       "CPU without --gpu"):
        devices.check_gpus([0], CUDA_BUILD, [], "no NVIDIA driver (libcuda.so.1 not found)")


def test_a_device_that_does_not_exist_lists_those_present():
    with pytest.raises(GpuError, match=r"--gpu 3: no such device \(2 present: GPU 0: NVIDIA "
                                       r"H100.*GPU 1: NVIDIA L4"):
        devices.check_gpus([3], CUDA_BUILD, [H100, L4])


def test_multi_gpu_is_refused_with_the_reason():
    with pytest.raises(GpuError, match="--gpu 0,1: multi-GPU training is not available.*P2PSync"):
        devices.check_gpus([0, 1], CUDA_BUILD, [H100, L4])


def test_a_device_the_build_has_no_code_for():
    v100 = Gpu(0, "Tesla V100", (7, 0), 16000)
    with pytest.raises(GpuError, match=r"compute capability 7\.0.*FRCNN_CUDA_ARCH=70"):
        devices.check_gpus([0], CUDA_BUILD, [v100])


def test_a_usable_device_is_selected():
    assert devices.check_gpus([1], CUDA_BUILD, [H100, L4]) == 1


@pytest.mark.parametrize("capability, runs", [
    ((9, 0), True),     # its own cubin
    ((8, 9), True),     # sm_86's cubin (same major, older minor)
    ((12, 1), True),    # sm_120's
    ((10, 3), True),    # sm_100's
    ((13, 0), True),    # PTX compute_120, compiled by the driver
    ((7, 0), False),    # older than every cubin and the PTX
    ((8, 0), True),
])
def test_runs_on(capability, runs):
    assert devices.runs_on(capability, CUDA_BUILD["cuda"]) is runs


def test_runs_on_without_ptx_needs_a_cubin_of_the_major():
    cuda = {"archs": ["90"], "ptx": None}
    assert devices.runs_on((9, 0), cuda) and not devices.runs_on((10, 0), cuda)


def test_describe_build():
    assert devices.describe_build({}) == "CPU only"
    text = devices.describe_build(CUDA_BUILD)
    assert text.startswith("CUDA 13.0 (pip toolkit), code for sm_75 sm_80")
    assert "+ PTX compute_120" in text and "no cuDNN" in text


class FakeCaffe:
    def __init__(self):
        self.calls = []

    def set_mode_cpu(self):
        self.calls.append("cpu")

    def set_mode_gpu(self):
        self.calls.append("gpu")

    def set_device(self, i):
        self.calls.append(f"device {i}")


def test_apply_puts_caffe_in_the_selected_mode(monkeypatch):
    fake = FakeCaffe()
    devices.apply(fake)
    assert fake.calls == ["cpu"]
    monkeypatch.setattr(devices, "driver_gpus", lambda: ([H100, L4], None))
    monkeypatch.setattr(devices, "caffe_build", lambda: CUDA_BUILD)
    assert devices.use_gpu("1") == 1 and devices.selected() == 1
    devices.apply(fake)
    assert fake.calls == ["cpu", "gpu", "device 1"]
    assert devices.use_gpu(None) is None
    devices.apply(fake)
    assert fake.calls[-1] == "cpu"


def test_a_selected_gpu_becomes_the_cfg_gpu_id(monkeypatch, cfg):
    """As py-faster-rcnn's --gpu: the Python layers' NMS runs on the same device."""
    from frcnn.app.runs import install_cfg

    monkeypatch.setattr(devices, "_selected", 1)
    install_cfg(config.default_config())
    assert config.cfg.GPU_ID == 1
    monkeypatch.setattr(devices, "_selected", None)
    install_cfg(config.default_config())
    assert config.cfg.GPU_ID == 0


def test_out_of_gpu_memory_says_what_to_do():
    e = RuntimeError("CUDA out of memory: cudaMalloc of 2048 MiB on GPU 0 failed "
                     "(out of memory; 100 of 81559 MiB free)")
    text = devices.explain(e)
    assert text.startswith(str(e)) and "TRAIN.SCALES" in text and "TRAIN.BATCH_SIZE" in text
    assert devices.explain(ValueError("other")) == "other"


def test_this_machines_driver_state_is_reported_without_a_crash():
    gpus, reason = devices.driver_gpus()
    assert bool(gpus) != bool(reason)
    lines = devices.report()
    assert lines[0].startswith("caffe device code: ")
    assert lines[0].endswith(devices.describe_build(devices.caffe_build()))


@pytest.mark.parametrize("command", [
    ["detect", "--gpu", "0", "--model", "missing.caffemodel", "image.jpg"],
    ["train", "--gpu", "0", "--net", "squeezenet/faster_rcnn_end2end", "--iters", "1",
     "--out", "unused"],
])
def test_gpu_on_this_machine_is_a_clear_error(command, capsys, tmp_path, monkeypatch):
    """No device here: a CPU build says how to build for the GPU; a CUDA build (after
    FRCNN_CUDA=pip ./install.sh) that there is no device.  Exit code 1, before any work."""
    if devices.driver_gpus()[0]:
        pytest.skip("this machine has a CUDA device")
    monkeypatch.chdir(tmp_path)
    assert cli.main(command) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"frcnn {command[0]}: error: --gpu 0: ")
    if devices.caffe_build().get("cuda"):
        assert "no CUDA device" in err
    else:
        assert "CPU-only build" in err and "FRCNN_CUDA=pip" in err
    assert not (tmp_path / "unused").exists()


def test_gpu_syntax_error_is_an_error_too(capsys):
    assert cli.main(["detect", "--gpu", "zero", "--model", "m", "i.jpg"]) == 1
    assert "expected a device id" in capsys.readouterr().err


def test_info_reports_the_device_code_and_devices(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "caffe device code: " in out and "CUDA devices" in out and "NMS backends" in out
