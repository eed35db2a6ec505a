"""param_str of the project's Caffe Python layers: one table of keys, one parser.

The layers parse with ``parse_param_str`` at setup; ``frcnn check`` reads the same table, so
a key is known in exactly one place.  Every form of py-faster-rcnn's models/ is accepted:

- YAML, one ``'key': value`` per line (``'feat_stride': 16``), with flow lists
  (``'scales': [8, 16, 32]``), block lists (``- 8`` lines) or the ``!!python/tuple [...]``
  tag of its COCO nets; spaces or tabs before a newline do not matter;
- a Python dict literal with or without its braces, comma-separated on one line
  (``'feat_stride': 16, 'scales': (8, 16, 32)``); tuples in parentheses are read as
  Python literals.

Keys may be quoted or bare, each given once.  YAML is read with a safe loader that knows
one tag beyond plain YAML, ``!!python/tuple``; any other ``!!python/...`` (or unknown) tag
raises ``ParamError`` and is never constructed.  Unknown or repeated keys, values of the wrong type
or below a key's ``minimum``, numbers that are not finite, and missing required keys raise
``ParamError`` naming the layer.
"""
from __future__ import annotations

import ast
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import yaml

_REQUIRED = object()


class ParamError(ValueError):
    """A malformed param_str."""


@dataclass(frozen=True)
class Param:
    kind: str          # "int", "float", "str", "bool", "numbers" (non-empty tuple of > 0)
    default: Any = _REQUIRED
    doc: str = ""
    minimum: int | None = None  # the smallest value of an "int"

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


_ANCHOR_PARAMS = {
    "feat_stride": Param("int", 16, "stride of the feature map in input pixels", 1),
    "scales": Param("numbers", (8, 16, 32), "anchor scales (side = 16 * scale at ratio 1)"),
    "ratios": Param("numbers", (0.5, 1, 2), "anchor aspect ratios (height / width)"),
}

LAYER_PARAMS: dict[str, dict[str, Param]] = {
    "rpn.anchor_target_layer.AnchorTargetLayer": {
        **_ANCHOR_PARAMS,
        "allowed_border": Param("int", 0, "anchors may cross the image border by this many "
                                          "pixels"),
    },
    "rpn.proposal_layer.ProposalLayer": dict(_ANCHOR_PARAMS),
    "rpn.proposal_target_layer.ProposalTargetLayer": {
        "num_classes": Param("int", doc="classes including background", minimum=2),
    },
    "roi_data_layer.layer.RoIDataLayer": {
        # None below means: take the value from cfg (named in the doc) at setup
        "num_classes": Param("int", doc="classes including background (checked against the "
                                        "dataset's class list)", minimum=2),
        "dataset": Param("str", "", "dataset to load at setup: a registered name "
                                    "(synth_train, voc_2007_trainval, ...), the path of a "
                                    "VOC-format folder or of a COCO instances .json; '' = "
                                    "wait for set_roidb() from Python"),
        "root": Param("str", "", "folder of a named dataset (default data/synth, "
                                 "data/VOCdevkit<year>); relative to the current directory"),
        "images": Param("str", "", "image folder of a COCO .json dataset (default: "
                                   "ROOT/<split> beside ROOT/annotations/, else ROOT, else "
                                   "the json's folder)"),
        "split": Param("str", "", "ImageSets/Main/<split>.txt of a path dataset (default "
                                  "trainval)"),
        "classes": Param("str", "", "class names without __background__, comma-separated, "
                                    "or a file with one per line (default: the folder's "
                                    "classes.txt, else the 20 VOC classes)"),
        "use_difficult": Param("bool", False, "train on objects marked difficult too"),
        "skip_bad": Param("bool", False, "skip bad images/objects of the dataset with a "
                                         "warning and a count instead of stopping"),
        "cfg": Param("str", "", "YAML config file merged into the global cfg at setup (for "
                                "`caffe train`; later layers see it too)"),
        "scales": Param("numbers", None, "short sides drawn from (cfg TRAIN.SCALES)"),
        "max_size": Param("int", None, "cap on the long side (cfg TRAIN.MAX_SIZE)", 1),
        "flip": Param("bool", None, "add flipped images (cfg TRAIN.USE_FLIPPED)"),
        "aspect_grouping": Param("bool", None, "pair images of like orientation "
                                               "(cfg TRAIN.ASPECT_GROUPING)"),
        "seed": Param("int", None, "seed of the shuffling and scale draws (cfg RNG_SEED)", 0),
        "prefetch": Param("bool", None, "prepare minibatches in a background thread "
                                        "(cfg TRAIN.USE_PREFETCH)"),
        "proposals": Param("str", "", "precomputed proposals for a Fast R-CNN data layer (six "
                                      "tops): a py-faster-rcnn pickle of per-image boxes in "
                                      "dataset order, or the JSON form of frcnn proposals; "
                                      "needs 'dataset'"),
    },
    "roi_data_layer.layer.OHEMDataLayer": {
        "num_classes": Param("int", 0, "classes including background (checked against the "
                                       "blobs when given; 0: not given)", minimum=0),
    },
}


class _TupleSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus the one tag py-faster-rcnn's param_str uses, ``!!python/tuple``.

    A subclass, so yaml.SafeLoader itself is unchanged; every other python/* tag stays
    unknown to it and raises a ConstructorError instead of being constructed.
    """


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple:
    """``!!python/tuple [a, b]`` -> ``(a, b)``; the tag must be on a sequence."""
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"!!python/tuple needs a sequence, got {node.id}", node.start_mark)
    return tuple(loader.construct_sequence(node, deep=True))


_TupleSafeLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


class _RepeatedKey(ValueError):
    """A key given twice (YAML and Python dicts would keep the last silently)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    """A YAML mapping whose keys are all different (else _RepeatedKey)."""
    loader.flatten_mapping(node)
    keys = [loader.construct_object(k, deep=True) for k, _ in node.value]
    for k in keys:
        if isinstance(k, (str, int, float, bool)) and keys.count(k) > 1:
            raise _RepeatedKey(f"key {k!r} is given twice")
    return loader.construct_mapping(node, deep=True)


_TupleSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_unique_mapping)

# a bare key at the start of the text or after '{' or ',': ``feat_stride: 16, scales: (8,)``
_BARE_KEY = re.compile(r"(^|[{,])(\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*):")


def _normalise(text: str) -> str:
    """The text without whitespace before its newlines (py-faster-rcnn writes ``16 \\n``)."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _python_dict(text: str) -> dict | None:
    """The text as a Python dict literal, braces optional (ast.literal_eval: nothing runs)."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    for candidate in (body, _BARE_KEY.sub(r"\1\2'\3'\4:", body)):
        try:
            with warnings.catch_warnings():  # "invalid escape sequence" of 'C:\data'
                warnings.simplefilter("ignore")
                tree = ast.parse("{" + candidate + "}", mode="eval")
            value = ast.literal_eval(tree)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            if len(value) < len(tree.body.keys):  # type: ignore[attr-defined]
                keys = [ast.literal_eval(k) for k in tree.body.keys]  # type: ignore
                repeated = sorted({repr(k) for k in keys if keys.count(k) > 1})
                raise _RepeatedKey(f"key {', '.join(repeated)} is given twice")
            return value
    return None


def _yaml_value(text: str) -> Any:
    """The text as YAML with ``_TupleSafeLoader``; None when it is not YAML.

    Raises ParamError for a tag the loader does not know (``!!python/object/apply:...``).
    """
    try:
        return yaml.load(text, Loader=_TupleSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as e:
        raise ParamError(f"param_str {text!r} rejected: {e.problem or e}; only plain YAML "
                         f"and its !!python/tuple [...] tag are read") from None
    except yaml.YAMLError:
        return None
    except _RepeatedKey:
        raise
    except (Exception, RecursionError, MemoryError) as e:  # a 5000-digit int, !!float '', [[[..
        raise ParamError(f"param_str {text[:200]!r} rejected: {type(e).__name__}: "
                         f"{str(e)[:200]}") from None


def _literal_mapping(text: str) -> Any:
    """The keys and values of a param_str, in any of the forms of the module docstring.

    Python literals come first (YAML misreads ``{'scales': (8, 16)}``), then YAML.  Returns
    what was read (a dict, or something else for the caller to reject).
    """
    text = _normalise(text)
    try:
        value = _python_dict(text)
        if value is not None:
            return value
        return _yaml_value(text)
    except _RepeatedKey as e:
        raise ParamError(f"param_str {text[:200]!r}: {e}") from None


def _literal(value: Any) -> Any:
    """A str value read as a Python literal (YAML leaves ``1e-3`` and ``(8, 16)`` strings)."""
    if isinstance(value, str):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return value


def _number(v: Any) -> bool:
    """An int or float that is finite as a float (10 ** 400 is not)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _convert(kind: str, value: Any) -> Any:
    if kind in ("numbers", "int", "float", "bool"):
        value = _literal(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and _number(value):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "numbers":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if isinstance(value, (list, tuple)):
            value = tuple(_literal(v) for v in value)
            if value and all(_number(v) and v > 0 for v in value):
                return value
    raise TypeError(kind)


def parse_param_str(text: str | None, layer: str, layer_name: str = "") -> dict[str, Any]:
    """Parse and validate a layer's param_str.

    Args:
        text: the param_str ('' or None means no keys).
        layer: 'module.Class', a key of LAYER_PARAMS.
        layer_name: the layer's name in the prototxt, for messages.
    Returns: every key of the layer, given or default.
    """
    spec = LAYER_PARAMS[layer]
    where = f"layer '{layer_name}' ({layer})" if layer_name else layer
    raw: Any = {}
    if text and text.strip():
        try:
            raw = _literal_mapping(text)
        except ParamError as e:
            raise ParamError(f"{where}: {e}") from None
        if not isinstance(raw, dict):
            raise ParamError(f"{where}: param_str {text!r} is not a list of 'key': value pairs")
    unknown = sorted(set(map(str, raw)) - set(spec))
    if unknown:
        raise ParamError(f"{where}: unknown param_str key(s) {unknown}; known keys: "
                         f"{sorted(spec)}")
    out = {}
    for key, param in spec.items():
        if key not in raw:
            if param.required:
                raise ParamError(f"{where}: param_str needs '{key}' ({param.doc})")
            out[key] = param.default
            continue
        try:
            out[key] = _convert(param.kind, raw[key])
        except TypeError:
            expected = {"numbers": "a non-empty tuple of positive numbers (finite)"}.get(
                param.kind, param.kind)
            raise ParamError(f"{where}: param_str '{key}' must be {expected}, got "
                             f"{raw[key]!r}") from None
        if param.minimum is not None and out[key] < param.minimum:
            raise ParamError(f"{where}: param_str '{key}' must be >= {param.minimum} "
                             f"({param.doc}), got {out[key]!r}")
    return out
