"""The one configuration of squeezenet-frcnn, with py-faster-rcnn's keys and end-to-end defaults.

``cfg`` is an EasyDict read only at the edges (Caffe layer setup, the command line, the
training and test drivers); library functions take explicit arguments.  Merge changes with
``cfg_from_file(path)`` (YAML) or ``cfg_from_list(['TRAIN.SCALES', '(400,)', ...])``: an
unknown key or a value of the wrong type raises ``ConfigError`` naming the key.

Every key, its default and its meaning is in ``KEYS`` below (``frcnn config`` prints them).
Every key of py-faster-rcnn's ``lib/fast_rcnn/config.py`` is accepted, so its
``experiments/cfgs/*.yml`` load as they are.  A few of its keys do nothing here (their
``Key.not_used`` says why): they are stored with py-faster-rcnn's defaults, and a file or
``--set`` list that sets one prints one ``[config] note:`` line per key.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Iterator, NamedTuple

from easydict import EasyDict


class ConfigError(ValueError):
    """An unknown configuration key, or a value of the wrong type."""


class Key(NamedTuple):
    """One configuration key: dotted name, default, meaning.

    ``not_used`` is empty for a key that applies; for a py-faster-rcnn key that is accepted
    but does nothing here it says why.
    """
    name: str
    default: Any
    doc: str
    not_used: str = ""

    @property
    def applies(self) -> bool:
        """Whether setting the key changes anything here."""
        return not self.not_used


_NOT_PROPOSALS = ("proposals come from the net's RPN (end-to-end) or from --proposals FILE "
                  "(Fast R-CNN data layers); the value is not used")
_NOT_PATHS = "paths are given on the command line (--dataset, --root, --net)"


KEYS: tuple[Key, ...] = (
    # ---- training: images and RoI minibatches ----
    Key("TRAIN.SCALES", (600,), "short side of training images, pixels; one is drawn per image"),
    Key("TRAIN.MAX_SIZE", 1000, "cap on the long side of a training image, pixels"),
    Key("TRAIN.IMS_PER_BATCH", 1, "images per minibatch (end-to-end training supports 1)"),
    Key("TRAIN.BATCH_SIZE", 128, "RoIs sampled per image by ProposalTargetLayer; -1 keeps all "
        "(OHEM nets)"),
    Key("TRAIN.FG_FRACTION", 0.25, "fraction of the RoI minibatch that is foreground, at most"),
    Key("TRAIN.FG_THRESH", 0.5, "a RoI is foreground when its IoU with a gt box is >= this"),
    Key("TRAIN.BG_THRESH_HI", 0.5, "a RoI is background when its best IoU is in [LO, HI)"),
    Key("TRAIN.BG_THRESH_LO", 0.0, "see BG_THRESH_HI (py-faster-rcnn end2end uses 0.0)"),
    Key("TRAIN.USE_FLIPPED", True, "add horizontally flipped copies of the training images"),
    Key("TRAIN.ASPECT_GROUPING", True, "group images of like aspect ratio in minibatches"),
    Key("TRAIN.USE_EMPTY_IMAGES", False, "train on images without (usable) objects as "
        "negatives: every anchor and RoI background; py-faster-rcnn drops them"),
    Key("TRAIN.BBOX_REG", True, "train bounding-box regressors"),
    Key("TRAIN.BBOX_THRESH", 0.5, "IoU a RoI needs with a gt box to be a regression example"),
    Key("TRAIN.BBOX_INSIDE_WEIGHTS", (1.0, 1.0, 1.0, 1.0), "weights of dx dy dw dh in the "
        "RoI box loss"),
    Key("TRAIN.BBOX_NORMALIZE_TARGETS", True, "normalise RoI regression targets"),
    Key("TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED", True, "normalise with the fixed MEANS and "
        "STDS below (end-to-end training needs this)"),
    Key("TRAIN.BBOX_NORMALIZE_MEANS", (0.0, 0.0, 0.0, 0.0), "means of dx dy dw dh"),
    Key("TRAIN.BBOX_NORMALIZE_STDS", (0.1, 0.1, 0.2, 0.2), "standard deviations of dx dy dw dh"),
    Key("TRAIN.SNAPSHOT_ITERS", 10000, "iterations between snapshots"),
    Key("TRAIN.SNAPSHOT_INFIX", "", "inserted into snapshot file names"),
    Key("TRAIN.USE_PREFETCH", False, "prepare minibatches in a background thread"),
    Key("TRAIN.HAS_RPN", True, "informational: the data layer's mode follows the tops the "
        "train net declares (3 tops: end to end; 6 tops: Fast R-CNN from proposals)"),
    Key("TRAIN.PROPOSAL_METHOD", "selective_search", "py-faster-rcnn's source of training "
        "proposals (selective_search, rpn, gt)", _NOT_PROPOSALS),
    # ---- training: the RPN ----
    Key("TRAIN.RPN_POSITIVE_OVERLAP", 0.7, "an anchor is positive when its IoU with a gt box "
        "is >= this (or it is some gt box's best anchor)"),
    Key("TRAIN.RPN_NEGATIVE_OVERLAP", 0.3, "an anchor is negative when its best IoU is < this"),
    Key("TRAIN.RPN_CLOBBER_POSITIVES", False, "negatives overrule positives when both apply"),
    Key("TRAIN.RPN_FG_FRACTION", 0.5, "fraction of the anchor minibatch that is positive, "
        "at most"),
    Key("TRAIN.RPN_BATCHSIZE", 256, "anchors sampled per image for the RPN losses"),
    Key("TRAIN.RPN_NMS_THRESH", 0.7, "NMS IoU threshold on proposals while training"),
    Key("TRAIN.RPN_PRE_NMS_TOP_N", 12000, "proposals kept before NMS while training"),
    Key("TRAIN.RPN_POST_NMS_TOP_N", 2000, "proposals kept after NMS while training"),
    Key("TRAIN.RPN_MIN_SIZE", 16, "proposals smaller than this (original-image pixels) are "
        "dropped"),
    Key("TRAIN.RPN_BBOX_INSIDE_WEIGHTS", (1.0, 1.0, 1.0, 1.0), "weights of dx dy dw dh in the "
        "RPN box loss"),
    Key("TRAIN.RPN_POSITIVE_WEIGHT", -1.0, "weight of positive anchors in (0, 1), or -1 for "
        "uniform 1 / number of sampled anchors"),
    # ---- training: online hard example mining ----
    Key("TRAIN.OHEM_USE_NMS", True, "NMS among RoIs by their loss before picking hard ones"),
    Key("TRAIN.OHEM_NMS_THRESH", 0.7, "IoU threshold of that NMS"),
    Key("TRAIN.OHEM_BATCH_SIZE", 128, "hard RoIs kept per image"),
    # ---- test ----
    Key("TEST.SCALES", (600,), "short side of test images, pixels"),
    Key("TEST.MAX_SIZE", 1000, "cap on the long side of a test image, pixels"),
    Key("TEST.NMS", 0.3, "per-class NMS IoU threshold on detections"),
    Key("TEST.SCORE_THRESH", 0.05, "detections below this class score are dropped"),
    Key("TEST.MAX_PER_IMAGE", 100, "detections kept per image, over all classes"),
    Key("TEST.BBOX_REG", True, "apply the box regression to the RoIs"),
    Key("TEST.HAS_RPN", True, "informational: the test mode follows the test net's inputs "
        "(an 'rois' input: Fast R-CNN from proposals; otherwise the net's RPN)"),
    Key("TEST.PROPOSAL_METHOD", "selective_search", "py-faster-rcnn's source of test "
        "proposals when the net has no RPN", _NOT_PROPOSALS),
    Key("TEST.SVM", False, "py-faster-rcnn: score with SVM-style (R-CNN) scores",
        "SVM-style scoring is not supported; the softmax scores are used"),
    Key("TEST.RPN_NMS_THRESH", 0.7, "NMS IoU threshold on proposals at test time"),
    Key("TEST.RPN_PRE_NMS_TOP_N", 6000, "proposals kept before NMS at test time"),
    Key("TEST.RPN_POST_NMS_TOP_N", 300, "proposals kept after NMS at test time"),
    Key("TEST.RPN_MIN_SIZE", 16, "proposals smaller than this (original-image pixels) are "
        "dropped"),
    # ---- everywhere ----
    Key("DEDUP_BOXES", 1.0 / 16, "Fast R-CNN test nets (rois as an input): proposals that "
        "coincide after scaling by this factor are scored once (py-faster-rcnn's "
        "DEDUP_BOXES); 0 disables"),
    Key("PIXEL_MEANS", (102.9801, 115.9465, 122.7717), "BGR means subtracted from images "
        "(py-faster-rcnn's (1, 1, 3) form [[[B, G, R]]] is accepted)"),
    Key("RNG_SEED", 3, "seed of every random generator (sampling, shuffling)"),
    Key("EPS", 1e-14, "a small number"),
    Key("USE_GPU_NMS", "auto", "NMS device: 'auto' the CUDA NMS where it was built and a GPU "
        "is present, else the CPU; True the GPU (one warning and the CPU without one); "
        "False the CPU"),
    Key("GPU_ID", 0, "the GPU to use"),
    Key("EXP_DIR", "default", "name of the experiment's output folder"),
    Key("ROOT_DIR", "", "py-faster-rcnn's project root", _NOT_PATHS),
    Key("DATA_DIR", "", "py-faster-rcnn's data folder", _NOT_PATHS),
    Key("MODELS_DIR", "", "py-faster-rcnn's models folder", _NOT_PATHS),
    Key("MATLAB", "matlab", "py-faster-rcnn: the MATLAB command of the official VOC "
        "evaluation", "the evaluation is in Python"),
)


def _nested(flat: Iterable[tuple[str, Any]]) -> dict:
    """``[('TEST.NMS', 0.4), ...]`` -> ``{'TEST': {'NMS': 0.4}}`` (plain dicts; values
    copied; a later item replaces an earlier one of the same name)."""
    root: dict = {}
    for name, value in flat:
        node = root
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {name}: {p} is also given a value of its own")
        node[leaf] = copy.deepcopy(value)
    return root


def _nest(flat: Iterable[tuple[str, Any]]) -> EasyDict:
    return EasyDict(_nested(flat))


def default_config() -> EasyDict:
    """A fresh configuration with every default."""
    return _nest((k.name, k.default) for k in KEYS)


_DEFAULTS = {k.name: k.default for k in KEYS}
_NOT_USED = {k.name: k.not_used for k in KEYS if not k.applies}
# keys whose list value may come nested in single-element lists (numpy shape (1, 1, 3))
_NESTED = {"PIXEL_MEANS"}

cfg = default_config()


def _unnest(value: Any) -> Any:
    """``[[[a, b, c]]]`` (or a numpy array of shape (1, 1, 3)) -> ``[a, b, c]``."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    while (isinstance(value, (list, tuple)) and len(value) == 1
           and isinstance(value[0], (list, tuple))):
        value = value[0]
    return value


def _check_range(name: str, value: Any) -> Any:
    """Range checks of the keys that have one; ConfigError naming the key."""
    if name == "DEDUP_BOXES" and value < 0:
        raise ConfigError(f"config key {name}: expected a factor >= 0 (0 disables), got "
                          f"{value!r}")
    return value


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Value converted to the default's type, or ConfigError naming the key."""
    def fail() -> ConfigError:
        return ConfigError(f"config key {name}: expected {type(default).__name__} like "
                           f"{default!r}, got {value!r}")

    if name == "USE_GPU_NMS":  # True, False or 'auto' (the default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        raise ConfigError(f"config key {name}: expected true, false or 'auto', got {value!r}")

    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise fail()
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int of 400 digits
                raise fail() from None
            if math.isfinite(number):
                return number
            raise ConfigError(f"config key {name}: expected a finite number, got {value!r}")
        raise fail()
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise fail()
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) == 0:
            raise fail()
        if not name.endswith("SCALES") and len(value) != len(default):
            raise ConfigError(f"config key {name}: expected {len(default)} values, got {value!r}")
        item = default[0]
        return tuple(_coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    raise fail()


def _flatten(tree: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name not in _DEFAULTS:  # a key's {} is a bad value
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _set(config: EasyDict, name: str, value: Any) -> None:
    if name not in _DEFAULTS:
        close = [k for k in _DEFAULTS if k.split(".")[-1] == name.split(".")[-1]]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown config key {name}{hint}")
    *parents, leaf = name.split(".")
    node = config
    for p in parents:
        node = node[p]
    if name in _NESTED:
        value = _unnest(value)
    node[leaf] = _check_range(name, _coerce(name, value, _DEFAULTS[name]))


def _note_not_used(names: Iterable[str], config: EasyDict) -> None:
    """One ``[config] note:`` line per key that was set but does nothing here."""
    for name in dict.fromkeys(names):
        if name in _NOT_USED:
            print(f"[config] note: {name} = {_get(config, name)!r} is accepted but not used "
                  f"here: {_NOT_USED[name]}", flush=True)


def merge_dict(updates: Mapping, config: EasyDict | None = None) -> EasyDict:
    """Merge a nested mapping of overrides into ``config`` (default: the global cfg)."""
    config = cfg if config is None else config
    checked = [(name, value) for name, value in _flatten(updates)]
    staged = copy.deepcopy(config)
    for name, value in checked:
        _set(staged, name, value)
    for name, _ in checked:  # all valid: apply
        _set(config, name, _get(staged, name))
    _note_not_used((name for name, _ in checked), config)
    return config


def _get(config: EasyDict, name: str) -> Any:
    node = config
    for part in name.split("."):
        node = node[part]
    return node


def cfg_from_file(path: str, config: EasyDict | None = None) -> EasyDict:
    """Merge a YAML file of overrides (nested like the keys, e.g. ``TRAIN: {SCALES: [400]}``)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_unique_key_loader()) or {}  # noqa: S506 - SafeLoader
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    except (Exception, RecursionError) as e:  # a 5000-digit int, !!float '', [[[[...
        raise ConfigError(f"config file {path} is not valid YAML: {type(e).__name__}: "
                          f"{str(e)[:200]}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return merge_dict(data, config)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _unique_key_loader():
    """yaml.SafeLoader, refusing a key given twice in one mapping (plain YAML keeps the
    last silently, e.g. a second TRAIN: section replacing the first)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            self.flatten_mapping(node)
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark)
                if isinstance(key, (str, int, float, bool)):
                    seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text  # a bare string such as an EXP_DIR name


def pairs_to_dict(pairs: Sequence[str]) -> dict:
    """``['TEST.NMS', '0.4', ...]`` -> ``{'TEST': {'NMS': 0.4}}`` (values are Python
    literals, else strings); not checked against the keys (``merge_dict`` does that)."""
    if len(pairs) % 2:
        raise ConfigError(f"expected KEY VALUE pairs, got an odd number of items: "
                          f"{list(pairs)!r}")
    return _nested((name, _literal(text)) for name, text in zip(pairs[::2], pairs[1::2]))


def overlay(base: Mapping, updates: Mapping) -> dict:
    """Nested overrides ``updates`` on top of ``base``, key by key (plain dicts; neither
    argument is changed); not checked against the keys."""
    return _nested(_flatten(base) + _flatten(updates))


def cfg_from_list(pairs: Sequence[str], config: EasyDict | None = None) -> EasyDict:
    """Merge ``['KEY', 'VALUE', ...]`` overrides (values are Python literals)."""
    return merge_dict(pairs_to_dict(pairs), config)


def describe() -> str:
    """Every key with its default and meaning, one per line; keys that do nothing here end
    with ``(not used: reason)``."""
    width = max(len(k.name) for k in KEYS)

    def line(k: Key) -> str:
        tail = "" if k.applies else f" (not used: {k.not_used})"
        return f"{k.name:<{width}}  {k.default!r:<28}  {k.doc}{tail}"

    return "\n".join(line(k) for k in KEYS)


def cfg_to_dict(config: EasyDict | None = None) -> dict:
    """A plain nested dict of the configuration (tuples as lists), e.g. to save as YAML."""
    config = cfg if config is None else config

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def _drop_unused_defaults(tree: dict, prefix: str = "") -> dict:
    """``tree`` without the keys that do nothing here and still hold their default."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out[key] = _drop_unused_defaults(value, name + ".")
        elif not (name in _NOT_USED and value == _DEFAULTS[name]):  # str or bool defaults
            out[key] = value
    return out


def write_cfg(path: str, config: EasyDict | None = None) -> None:
    """Save the configuration as YAML (cfg_from_file reads it back to the same values).

    Every key is written except those that do nothing here and hold their default, so
    reading the file back prints no ``[config] note:`` lines for them.
    """
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump(_drop_unused_defaults(cfg_to_dict(config)), f, sort_keys=False)


@contextlib.contextmanager
def preserved() -> Iterator[EasyDict]:
    """The global cfg, put back as it was on exit (for code that merges into it
    temporarily: checks, benchmarks, tests)."""
    saved = copy.deepcopy(cfg)
    try:
        yield cfg
    finally:
        cfg.clear()
        cfg.update(saved)
