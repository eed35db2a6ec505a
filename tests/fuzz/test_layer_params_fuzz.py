"""Fuzz: every layer's param_str (frcnn.layer_params.parse_param_str).

Contract (the module docstring): a param_str in any of py-faster-rcnn's forms gives every
key of the layer with the table's type; anything else raises ParamError (a ValueError)
naming the layer.  Values: int (no bool, no float), bool, str, numbers (a non-empty tuple
of finite positive numbers); the keys below also have a smallest value.
"""
from __future__ import annotations

import math

import yaml
from hypothesis import given
from hypothesis import strategies as st

from frcnn.layer_params import LAYER_PARAMS, ParamError, parse_param_str
from tests.fuzz._fuzz import FUZZ, TOKENS, count, json_values, mutated_text, outcome

LAYERS = sorted(LAYER_PARAMS)

#: the smallest value of int keys that have one: (layer or None for all, key) -> minimum
MINIMUM = {(None, "feat_stride"): 1, (None, "max_size"): 1, (None, "seed"): 0,
           ("rpn.proposal_target_layer.ProposalTargetLayer", "num_classes"): 2,
           ("roi_data_layer.layer.RoIDataLayer", "num_classes"): 2,
           ("roi_data_layer.layer.OHEMDataLayer", "num_classes"): 0}


def minimum(layer: str, key: str) -> int | None:
    return MINIMUM.get((layer, key), MINIMUM.get((None, key)))


def check_params(layer: str, out: dict) -> None:
    """What parse_param_str returned has the table's keys, types and ranges."""
    spec = LAYER_PARAMS[layer]
    assert set(out) == set(spec), out
    for key, param in spec.items():
        value = out[key]
        if value is None:
            assert param.default is None, (key, value)
            continue
        where = f"{layer} '{key}' = {value!r}"
        if param.kind == "int":
            assert type(value) is int, where
            low = minimum(layer, key)
            assert low is None or value >= low, where
        elif param.kind == "float":
            assert type(value) is float and math.isfinite(value), where
        elif param.kind == "bool":
            assert type(value) is bool, where
        elif param.kind == "str":
            assert type(value) is str, where
        elif param.kind == "numbers":
            assert type(value) is tuple and value, where
            for v in value:
                assert type(v) in (int, float) and math.isfinite(v) and v > 0, where
        else:
            raise AssertionError(f"unknown kind {param.kind}")


def parse(text, layer):
    result = outcome(parse_param_str, (ParamError,), text, layer, "fuzzed")
    if isinstance(result, ParamError):
        assert "fuzzed" in str(result), f"the error does not name the layer: {result}"
    else:
        check_params(layer, result)
    return result


# ----------------------------------------------------------------------------- valid params

_SAFE_STR = st.text(st.sampled_from("abcxyz019_-./"), max_size=12)
_POSITIVE = st.one_of(st.integers(1, 10 ** 6),
                      st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False))


def value_of(layer: str, key: str) -> st.SearchStrategy:
    param = LAYER_PARAMS[layer][key]
    if param.kind == "int":
        low = minimum(layer, key)
        return st.integers(-10 ** 6 if low is None else low, 10 ** 6)
    if param.kind == "float":
        return st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    if param.kind == "bool":
        return st.booleans()
    if param.kind == "str":
        return _SAFE_STR
    return st.lists(_POSITIVE, min_size=1, max_size=5).map(tuple)


@st.composite
def valid_params(draw, layer: str) -> dict:
    spec = LAYER_PARAMS[layer]
    keys = [k for k, p in spec.items() if p.required]
    keys += draw(st.lists(st.sampled_from(sorted(spec)), unique=True, max_size=len(spec)))
    return {k: draw(value_of(layer, k)) for k in dict.fromkeys(keys)}


def _yaml_scalar(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(repr, value)) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value + "'"
    return repr(value)


@st.composite
def rendered(draw, params: dict | list) -> str:
    """params (a dict or (key, value) pairs) as a param_str in one of py-faster-rcnn's
    forms."""
    form = draw(st.sampled_from(["yaml", "yaml-bare", "yaml-tuple-tag", "python",
                                 "python-braces", "python-bare"]))
    items = list(params.items()) if isinstance(params, dict) else list(params)
    if form.startswith("yaml"):
        lines = []
        for k, v in items:
            key = k if form == "yaml-bare" else f"'{k}'"
            if isinstance(v, tuple) and form == "yaml-tuple-tag":
                lines.append(f"{key}: !!python/tuple {_yaml_scalar(v)}")
            else:
                lines.append(f"{key}: {_yaml_scalar(v)}" + draw(st.sampled_from(["", " ", "\t"])))
        return "\n".join(lines)
    body = ", ".join(f"{k if form == 'python-bare' else repr(k)}: {v!r}" for k, v in items)
    return "{" + body + "}" if form == "python-braces" else body


@FUZZ
@given(data=st.data(), layer=st.sampled_from(LAYERS))
def test_every_form_of_valid_params_reads_back(data, layer):
    count()
    params = data.draw(valid_params(layer))
    text = data.draw(rendered(params))
    out = parse(text, layer)
    assert not isinstance(out, ParamError), f"{text!r}: {out}"
    for k, v in params.items():
        assert out[k] == v, (text, k, out[k], v)


@FUZZ
@given(data=st.data(), layer=st.sampled_from(LAYERS))
def test_mutated_params(data, layer):
    count()
    text = data.draw(mutated_text(data.draw(rendered(data.draw(valid_params(layer))))))
    parse(text, layer)


@FUZZ
@given(data=st.data(), layer=st.sampled_from(LAYERS))
def test_values_of_any_type(data, layer):
    """Known keys with values of every type, written as Python or as YAML."""
    count()
    keys = sorted(LAYER_PARAMS[layer])
    params = data.draw(st.dictionaries(st.sampled_from(keys), json_values(), min_size=1,
                                       max_size=4))
    if data.draw(st.booleans()):
        text = ", ".join(f"{k!r}: {v!r}" for k, v in params.items())
    else:
        text = yaml.safe_dump(params, default_flow_style=data.draw(st.booleans()))
    parse(text, layer)


_FRAGMENTS = st.sampled_from(sorted({k for spec in LAYER_PARAMS.values() for k in spec})
                             + ["'", ":", ": ", ",", "\n", "16", "(8, 16)", "[1, 2]", "- 8",
                                "!!python/tuple [1]", "{", "}", "true", "'x'"]
                             + list(TOKENS))


@FUZZ
@given(text=st.one_of(st.text(), st.lists(_FRAGMENTS, max_size=12).map("".join)),
       layer=st.sampled_from(LAYERS))
def test_any_text(text, layer):
    count()
    parse(text, layer)


@FUZZ
@given(data=st.data(), layer=st.sampled_from(LAYERS))
def test_a_key_given_twice_is_refused(data, layer):
    """YAML and Python dicts would keep the last value silently."""
    count()
    params = data.draw(valid_params(layer).filter(bool))
    key = data.draw(st.sampled_from(sorted(params)))
    items = list(params.items())
    items.insert(data.draw(st.integers(0, len(items))), (key, data.draw(value_of(layer, key))))
    text = data.draw(rendered(items))
    result = parse(text, layer)
    assert isinstance(result, ParamError), (text, result)


_PATHISH = st.one_of(st.sampled_from([
    "", "synth_train", "voc_2007_trainval", "x.json", "a/b", "/", ".", "..", "~",
    "~nobody_here/x", "~/x.json", "dog,cat", "dog,,cat", ",", "__background__,dog", "dog,dog",
    "a" * 300, "a/" * 200 + "x.json", "b" * 300 + ".json", "x\x00y", "x\x00.json"]),
    st.text(max_size=12))
_OPTIONAL = st.one_of(st.just(""), _PATHISH)


@FUZZ
@given(name=_PATHISH, root=_OPTIONAL, split=_OPTIONAL, classes=_OPTIONAL, images=_OPTIONAL)
def test_data_layer_dataset_keys(name, root, split, classes, images):
    """What RoIDataLayer does with its 'dataset', 'root', 'split', 'classes' and 'images'
    strings: a Dataset, or ValueError (DatasetError) / FileNotFoundError."""
    count()
    from frcnn.data.datasets import Dataset, get_dataset, parse_classes

    names = outcome(parse_classes, (ValueError, FileNotFoundError), classes)
    if isinstance(names, BaseException):
        return
    dataset = outcome(get_dataset, (ValueError, FileNotFoundError), name, root or None,
                      split or None, names, images or None)
    assert isinstance(dataset, (Dataset, ValueError, FileNotFoundError)), dataset
