"""``frcnn detect --jsonl FILE``: detection over many images, streamed to JSON Lines.

- ``expand_inputs``: image files, folders (walked, sorted, by image suffix), glob patterns
  and list files (``--from FILE``, one path a line) -> the paths in input order, each once;
- ``written_images``: the images a JSON Lines file already holds (``--resume`` skips them; a
  last line cut short by a crash is dropped from the file first);
- ``detect_stream``: one line per image, appended and flushed as each finishes::

      {"image": PATH, "width": W, "height": H,
       "detections": [{"class": NAME, "score": S, "box": [x1, y1, x2, y2],
                       "category_id": COCO_ID (where the model has them)}, ...]}
      {"image": PATH, "error": "what went wrong"}     (an unreadable image: the run goes on)

  with progress (images per second, ETA) on the log.
"""
from __future__ import annotations

import glob
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GLOB_CHARS = set("*?[")


def _folder_images(folder: Path) -> list[str]:
    return [str(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def read_list_file(path: str | os.PathLike) -> list[str]:
    """The paths of a list file: one a line, blank lines and '#' comments skipped; relative
    paths are taken from the list file's folder."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"image list not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"image list {path} cannot be read: {e}") from None
    out = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            p = Path(entry).expanduser()
            out.append(str(p if p.is_absolute() else path.parent / p))
    return out


def expand_inputs(items: Sequence[str], list_file: str | os.PathLike | None = None
                  ) -> list[str]:
    """Image paths in input order, each once.  A folder gives its images (recursively,
    sorted); a pattern with ``* ? [`` its matches (sorted; ValueError when none); a path
    that does not exist is kept (its line will say so); ``list_file`` is read last."""
    paths: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            paths += _folder_images(p)
        elif not p.exists() and _GLOB_CHARS & set(item):
            matches = sorted(m for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
            if not matches:
                raise ValueError(f"no image matches {item!r}")
            paths += matches
        else:
            paths.append(str(p))
    if list_file is not None:
        paths += read_list_file(list_file)
    return list(dict.fromkeys(paths))


def written_images(jsonl: str | os.PathLike) -> set[str]:
    """The images a JSON Lines results file already holds.  A last line that is not
    complete JSON (the run was killed while writing it) is cut from the file."""
    path = Path(jsonl)
    if not path.exists():
        return set()
    data = path.read_bytes()
    done: set[str] = set()
    good_end = 0
    for line in data.splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n"):
            break
        if isinstance(row, dict) and isinstance(row.get("image"), str):
            done.add(row["image"])
        good_end += len(line)
    if good_end != len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return done


def _eta(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def detect_stream(detector: Any, class_names: Sequence[str], paths: Sequence[str],
                  jsonl: str | os.PathLike, thresh: float = 0.5, resume: bool = False,
                  category_ids: Sequence[int] | None = None,
                  log: Callable[[str], None] | None = print,
                  progress_every: float = 2.0) -> dict[str, int]:
    """Detect on every path not yet in ``jsonl`` (with ``resume``; without it the file is
    started anew) and append a line for each.  Returns counts: images, skipped, errors."""
    from frcnn.data.blobs import read_image
    from frcnn.inference import detections_to_json

    out = Path(jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = written_images(out) if resume else set()
    if not resume and out.exists():
        out.unlink()
    todo = [p for p in paths if p not in done]
    counts = {"images": 0, "skipped": len(paths) - len(todo), "errors": 0}
    if log and counts["skipped"]:
        log(f"[detect] resuming: {counts['skipped']} of {len(paths)} images already in {out}")
    start = last = time.perf_counter()
    with open(out, "a", encoding="utf-8") as f:
        for i, path in enumerate(todo):
            try:
                im = read_image(path)
                rows = detections_to_json(detector.detect(im), class_names, thresh)
                if category_ids:
                    for row in rows:
                        row["category_id"] = int(category_ids[class_names.index(row["class"]) - 1])
                line = {"image": path, "width": int(im.shape[1]), "height": int(im.shape[0]),
                        "detections": rows}
            except (ValueError, OSError) as e:  # unreadable, empty, not an image
                line = {"image": path, "error": str(e)}
                counts["errors"] += 1
            f.write(json.dumps(line) + "\n")
            f.flush()
            counts["images"] += 1
            now = time.perf_counter()
            if log and (now - last >= progress_every or i + 1 == len(todo)):
                last = now
                rate = (i + 1) / max(now - start, 1e-9)
                log(f"[detect] {i + 1}/{len(todo)} images  {rate:.2f} images/s  "
                    f"ETA {_eta((len(todo) - i - 1) / rate)}  errors {counts['errors']}")
        os.fsync(f.fileno())
    return counts
