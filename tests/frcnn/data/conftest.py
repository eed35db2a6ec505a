"""Fixtures of the data tests: a small synthetic dataset and hand-written VOC folders."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from frcnn.data.synth import SynthOptions, write_synth_dataset

#: small and fast: 10 train and 4 test images of 96 x 128
TINY = SynthOptions(num_train=10, num_test=4, height=96, width=128, min_object=16,
                    max_object=48, max_objects=3, seed=5)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, TINY, log=None)
    return out


def obj_xml(name: str, xmin, ymin, xmax, ymax, difficult: int = 0, truncated: int = 0) -> str:
    return (f"<object><name>{name}</name><truncated>{truncated}</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


class VOCFolder:
    """Writes a VOC-format folder image by image: ``add(id, objects_xml, size=(w, h))``."""

    def __init__(self, root: Path):
        self.root = root
        for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.ids: list[str] = []

    def add(self, image_id: str, objects: str = "", width: int = 50, height: int = 40,
            write_size: bool = True, image: bool = True, xml: str | None = None) -> Path:
        import cv2

        if image:
            im = np.full((height, width, 3), 128, np.uint8)
            cv2.imwrite(str(self.root / "JPEGImages" / f"{image_id}.jpg"), im)
        size = (f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
                if write_size else "")
        text = xml if xml is not None else textwrap.dedent(
            f"<annotation><filename>{image_id}.jpg</filename>{size}{objects}</annotation>")
        path = self.root / "Annotations" / f"{image_id}.xml"
        path.write_text(text)
        self.ids.append(image_id)
        self.write_split()
        return path

    def write_split(self, split: str = "trainval") -> None:
        (self.root / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{i}\n" for i in self.ids))


@pytest.fixture
def voc_folder(tmp_path) -> VOCFolder:
    return VOCFolder(tmp_path / "voc")
