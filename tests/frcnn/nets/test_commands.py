"""`frcnn prototxt` and `frcnn check` on the command line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from frcnn import cli
from frcnn.nets import generate
from frcnn.nets.variants import PRESETS
from tests.conftest import ROOT
from tests.frcnn.nets.conftest import FIXTURES


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prototxt_variant_with_changes(tmp_path, capsys):
    out = tmp_path / "voc"
    code, text, _ = run(capsys, "prototxt", "--variant", "squeezenet/faster_rcnn_end2end_ohem",
                        "--out", str(out), "--num-classes", "21", "--anchors", "seed",
                        "--iters", "300", "--stepsize", "200", "--base-lr", "0.0005",
                        "--iter-size", "1", "--scale", "400", "--max-size", "700",
                        "--data-param", "dataset=synthetic", "--data-param", "flip=True")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(generate.FILES)
    assert "num_classes 21" in text and "70 anchors" in text and "parameters:" in text
    train = (out / "train.prototxt").read_text()
    assert "'num_classes': 21\\n'dataset': 'synthetic'\\n'flip': True" in train
    assert "num_output: 84" in train and "num_output: 280" in train
    solver = (out / "solver.prototxt").read_text().splitlines()
    for line in (f'train_net: "{out}/train.prototxt"', "max_iter: 300", "stepsize: 200",
                 "base_lr: 0.0005", "iter_size: 1"):
        assert line in solver
    assert "BATCH_SIZE: -1" in (out / "config.yml").read_text()
    assert "dim: 400\n      dim: 700" in (out / "test.prototxt").read_text()


def test_prototxt_ratios_and_scales(tmp_path, capsys):
    code, text, _ = run(capsys, "prototxt", "--variant", "zf/faster_rcnn_end2end", "--out",
                        str(tmp_path), "--ratios", "0.5", "1", "--scales", "4", "8", "16",
                        "--no-ohem", "--net-dir", "models/zf")
    assert code == 0 and "6 anchors" in text
    assert "'ratios': [0.5, 1]\\n'scales': [4, 8, 16]" in (tmp_path / "test.prototxt").read_text()
    assert 'train_net: "models/zf/train.prototxt"' in (tmp_path / "solver.prototxt").read_text()


def test_prototxt_all_writes_the_presets(tmp_path, capsys):
    code, text, _ = run(capsys, "prototxt", "--all", "--out", str(tmp_path))
    assert code == 0
    for name in PRESETS:
        assert f"{tmp_path}/{name}/:" in text
        for fname in ("train.prototxt", "test.prototxt", "config.yml"):
            assert (tmp_path / name / fname).read_text() == \
                (ROOT / "prototxts" / name / fname).read_text()


def test_prototxt_usage_errors(tmp_path, capsys):
    code, _, err = run(capsys, "prototxt", "--all", "--num-classes", "21")
    assert code == 1 and "--num-classes need --variant" in err
    code, _, err = run(capsys, "prototxt", "--variant", "squeezenet/faster_rcnn_end2end")
    assert code == 1 and "needs --out" in err
    code, _, err = run(capsys, "prototxt", "--variant", "vgg/x", "--out", str(tmp_path))
    assert code == 1 and "unknown variant" in err
    code, _, err = run(capsys, "prototxt", "--variant", "zf/faster_rcnn_end2end", "--out",
                       str(tmp_path), "--num-classes", "1")
    assert code == 1 and "num_classes" in err
    code, _, err = run(capsys, "prototxt", "--variant", "zf/faster_rcnn_end2end", "--out",
                       str(tmp_path), "--anchors", "seed", "--ratios", "1")
    assert code == 1 and "not both" in err


def test_prototxt_list(capsys):
    code, text, _ = run(capsys, "prototxt", "--list")
    assert code == 0
    for name in PRESETS:
        assert name in text


def test_check_generated_and_seed_fixtures(capsys):
    nets = [str(ROOT / "prototxts" / name / f) for name in PRESETS
            for f in ("train.prototxt", "test.prototxt")]
    code, text, _ = run(capsys, "check", "--no-imports", *nets)
    assert code == 0, text
    assert text.count("OK: no problems found") == len(nets)
    assert text.count("parameters:") == len(nets)
    code, text, _ = run(capsys, "check", "--no-imports", nets[0],
                        str(FIXTURES / "seed_plain_cls_score.prototxt"))
    assert code == 1
    assert "ERROR layer 'cls_score' (InnerProduct): num_output 5" in text


def test_check_verbose_and_input_size(capsys):
    code, text, _ = run(capsys, "check", "--no-imports", "-v", "--input-size", "300x500",
                        str(ROOT / "prototxts/zf/faster_rcnn_end2end/train.prototxt"))
    assert code == 0
    assert "fc6: [4096, 9216] [4096] = 37,752,832" in text


def test_frcnn_executable_has_the_subcommands():
    frcnn = Path(sys.executable).with_name("frcnn")
    proc = subprocess.run([str(frcnn), "check", "--no-imports",
                           str(FIXTURES / "seed_ohem_pool_sizes.prototxt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "'cls_score_w'" in proc.stdout
    proc = subprocess.run([str(frcnn), "--help"], capture_output=True, text=True, timeout=60)
    assert "prototxt" in proc.stdout and "check" in proc.stdout
