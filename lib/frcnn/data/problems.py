"""Reports of bad dataset input: raise at once (the default) or skip with a warning.

Every problem is an exception whose message names the file and, for an object, its index
and class, e.g. ``Annotations/000012.xml: object 2 ('dog'): x2 < x1 (xmin 50, xmax 40)``.
In skip mode the problem is printed (the first ``max_printed`` of them) and counted; the
caller drops the object or image concerned and prints ``summary()`` at the end.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO


class DatasetError(ValueError):
    """A malformed annotation, image or image list."""


def path_is(path: Path, kind: str = "file") -> bool:
    """``path.is_file()`` (kind 'file') or ``is_dir()``, False too for a name the OS refuses
    (a name too long, ...), which pathlib raises as OSError."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except OSError:
        return False


class Problems:
    """Collects the problems met while reading a dataset.

    Args:
        skip: False: ``report`` raises the problem; True: it warns and counts.
        out: where warnings go (default stderr).
        max_printed: warnings printed at most; the rest are only counted.
    """

    def __init__(self, skip: bool = False, out: TextIO | None = None, max_printed: int = 20):
        self.skip = skip
        self.out = out
        self.max_printed = max_printed
        self.skipped_images = 0
        self.skipped_objects = 0

    @property
    def count(self) -> int:
        return self.skipped_images + self.skipped_objects

    def report(self, error: Exception, what: str = "image") -> None:
        """Raise ``error``, or (skip mode) warn and count one skipped ``what``
        ('image' or 'object')."""
        if not self.skip:
            raise error
        if what == "object":
            self.skipped_objects += 1
        else:
            self.skipped_images += 1
        out = self.out or sys.stderr
        if self.count <= self.max_printed:
            print(f"[data] warning: skipping {what}: {error}", file=out, flush=True)
        elif self.count == self.max_printed + 1:
            print("[data] warning: more problems; only counting them now", file=out, flush=True)

    def summary(self) -> str:
        """One line: how many images and objects were skipped."""
        return (f"skipped {self.skipped_images} image(s) and {self.skipped_objects} object(s) "
                f"with problems")
