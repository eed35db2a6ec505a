"""param_str of the project's Caffe Python layers: one table of keys, one parser.

The layers parse with ``parse_param_str`` at setup; ``frcnn check`` reads the same table, so
a key is known in exactly one place.  The accepted text is py-faster-rcnn's: YAML, one
``'key': value`` per line (``'feat_stride': 16``), or a comma-separated list of them
(``'feat_stride': 16, 'scales': (8, 16, 32)``); tuples written with parentheses are read as
Python literals.  Unknown keys, values of the wrong type and missing required keys raise
``ParamError`` naming the layer.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

_REQUIRED = object()


class ParamError(ValueError):
    """A malformed param_str."""


@dataclass(frozen=True)
class Param:
    kind: str          # "int", "float", "str", "bool", "numbers" (non-empty tuple of > 0)
    default: Any = _REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


_ANCHOR_PARAMS = {
    "feat_stride": Param("int", 16, "stride of the feature map in input pixels"),
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
        "num_classes": Param("int", doc="classes including background"),
    },
    "roi_data_layer.layer.RoIDataLayer": {
        # None below means: take the value from cfg (named in the doc) at setup
        "num_classes": Param("int", doc="classes including background (checked against the "
                                        "dataset's class list)"),
        "dataset": Param("str", "", "dataset to load at setup: a registered name "
                                    "(synth_train, voc_2007_trainval, ...) or the path of a "
                                    "VOC-format folder; '' = wait for set_roidb() from Python"),
        "root": Param("str", "", "folder of a named dataset (default data/synth, "
                                 "data/VOCdevkit<year>); relative to the current directory"),
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
        "max_size": Param("int", None, "cap on the long side (cfg TRAIN.MAX_SIZE)"),
        "flip": Param("bool", None, "add flipped images (cfg TRAIN.USE_FLIPPED)"),
        "aspect_grouping": Param("bool", None, "pair images of like orientation "
                                               "(cfg TRAIN.ASPECT_GROUPING)"),
        "seed": Param("int", None, "seed of the shuffling and scale draws (cfg RNG_SEED)"),
        "prefetch": Param("bool", None, "prepare minibatches in a background thread "
                                        "(cfg TRAIN.USE_PREFETCH)"),
    },
    "roi_data_layer.layer.OHEMDataLayer": {
        "num_classes": Param("int", 0, "classes including background (checked against the "
                                       "blobs when given)"),
    },
}


def _literal_mapping(text: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if isinstance(value, dict):
        return value
    try:
        return ast.literal_eval("{" + text.strip().strip("{}") + "}")
    except (ValueError, SyntaxError):
        return value


def _convert(kind: str, value: Any) -> Any:
    if isinstance(value, str) and kind in ("numbers", "int", "float", "bool"):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "numbers":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if (isinstance(value, (list, tuple)) and value
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                        for v in value)):
            return tuple(value)
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
        raw = _literal_mapping(text)
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
            expected = {"numbers": "a non-empty tuple of positive numbers"}.get(param.kind,
                                                                                 param.kind)
            raise ParamError(f"{where}: param_str '{key}' must be {expected}, got "
                             f"{raw[key]!r}") from None
    return out
