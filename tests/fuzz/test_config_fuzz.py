"""Fuzz: the configuration (frcnn.config): ``--set KEY VALUE`` lists and YAML cfg files.

Contract (the module docstring): an unknown key or a value of the wrong type raises
ConfigError (a ValueError) naming the key, and a file that does not exist
FileNotFoundError; a merge that fails changes nothing.  What is accepted has the default's
type: bool, int (no bool), float (finite), str, tuples of the item type (as many items as
the default, any number of SCALES), USE_GPU_NMS true/false/'auto'.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from frcnn.config import (KEYS, ConfigError, cfg_from_file, cfg_from_list, cfg_to_dict,
                          default_config, write_cfg)
from tests.fuzz._fuzz import (FUZZ, TOKENS, count, json_values, mutated_bytes, mutated_text,
                              mutated_tree, outcome)

NAMES = [k.name for k in KEYS]
DEFAULTS = {k.name: k.default for k in KEYS}


def get(config, name):
    node = config
    for part in name.split("."):
        node = node[part]
    return node


def _typed(value, default) -> bool:
    if isinstance(default, bool):
        return type(value) is bool
    if isinstance(default, int):
        return type(value) is int
    if isinstance(default, float):
        return type(value) is float and math.isfinite(value)
    if isinstance(default, str):
        return type(value) is str
    return False


def check_config(config) -> None:
    """Every key of ``config`` has its default's type (see the module docstring)."""
    for name, default in DEFAULTS.items():
        value = get(config, name)
        where = f"{name} = {value!r}"
        if name == "USE_GPU_NMS":
            assert value in (True, False, "auto") and type(value) in (bool, str), where
        elif isinstance(default, tuple):
            assert type(value) is tuple and value, where
            assert name.endswith("SCALES") or len(value) == len(default), where
            assert all(_typed(v, default[0]) for v in value), where
        else:
            assert _typed(value, default), where
    assert get(config, "DEDUP_BOXES") >= 0


def merge(fn, arg, documented=(ConfigError,)):
    config = default_config()
    before = cfg_to_dict(config)
    result = outcome(fn, documented, arg, config)
    if isinstance(result, BaseException):
        assert cfg_to_dict(config) == before, f"a failed merge changed the cfg: {result}"
    else:
        check_config(config)
    return result, config


# ----------------------------------------------------------------------------- valid values

_FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def valid_value(name: str) -> st.SearchStrategy:
    default = DEFAULTS[name]
    if name == "USE_GPU_NMS":
        return st.sampled_from([True, False, "auto"])
    if name == "DEDUP_BOXES":
        return st.floats(0, 1e3)

    def item(d):
        if isinstance(d, bool):
            return st.booleans()
        if isinstance(d, int):
            return st.integers(-10 ** 6, 10 ** 6)
        if isinstance(d, float):
            return _FINITE
        return st.text(max_size=12)

    if isinstance(default, tuple):
        n = (1, 4) if name.endswith("SCALES") else (len(default), len(default))
        return st.lists(item(default[0]), min_size=n[0], max_size=n[1]).map(tuple)
    return item(default)


@st.composite
def valid_updates(draw) -> dict:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1, max_size=6))
    return {n: draw(valid_value(n)) for n in names}


def nested(flat: dict) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return tree


@FUZZ
@given(updates=valid_updates())
def test_valid_set_values_read_back(updates):
    count()
    pairs = [x for name, v in updates.items() for x in (name, repr(v))]
    result, config = merge(cfg_from_list, pairs)
    assert not isinstance(result, BaseException), f"{pairs}: {result}"
    for name, v in updates.items():
        assert get(config, name) == v, (name, get(config, name), v)


@FUZZ
@given(updates=valid_updates())
def test_write_cfg_reads_back(updates):
    count()
    config = default_config()
    cfg_from_list([x for name, v in updates.items() for x in (name, repr(v))], config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.yml"
        write_cfg(str(path), config)
        result, again = merge(cfg_from_file, str(path))
    assert not isinstance(result, BaseException), result
    assert cfg_to_dict(again) == cfg_to_dict(config)


# ----------------------------------------------------------------------------- --set

_KEY_TEXT = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).flatmap(lambda n: st.sampled_from(
        [n + ".X", n.split(".")[0], n.lower(), n + ".", "." + n, n.replace(".", "..")])),
    st.sampled_from(["TRAIN", "TEST", "", ".", "TRAIN.", "X.Y.Z"]),
    st.text(max_size=10))

_VALUE_TEXT = st.one_of(
    json_values().map(repr),
    st.sampled_from(NAMES).flatmap(lambda n: mutated_text(repr(DEFAULTS[n]))),
    st.sampled_from(TOKENS),
    st.text(max_size=20))


@FUZZ
@given(pairs=st.lists(st.tuples(_KEY_TEXT, _VALUE_TEXT), min_size=1, max_size=4),
       odd=st.booleans())
def test_set_lists(pairs, odd):
    count()
    flat = [x for pair in pairs for x in pair]
    result, _ = merge(cfg_from_list, flat[:-1] if odd else flat)
    if odd:
        assert isinstance(result, ConfigError)


# ----------------------------------------------------------------------------- files

@FUZZ
@given(data=st.data())
def test_cfg_files(data):
    count()
    tree = data.draw(mutated_tree(nested(data.draw(valid_updates()))))
    try:
        text = yaml.safe_dump(tree, default_flow_style=data.draw(st.booleans()))
    except yaml.YAMLError:
        text = repr(tree)
    how = data.draw(st.sampled_from(["plain", "text", "bytes"]))
    raw = text.encode()
    if how == "text":
        raw = data.draw(mutated_text(text)).encode("utf-8", "surrogatepass")
    elif how == "bytes":
        raw = data.draw(mutated_bytes(raw))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.yml"
        path.write_bytes(raw)
        merge(cfg_from_file, str(path))


@pytest.mark.parametrize("make", ["missing", "directory", "empty"])
def test_cfg_file_paths(tmp_path, make):
    count()
    path = tmp_path / "cfg.yml"
    if make == "directory":
        path.mkdir()
    elif make == "empty":
        path.write_text("")
    merge(cfg_from_file, str(path), (ConfigError, FileNotFoundError))


@FUZZ
@given(first=valid_updates(), second=valid_updates())
def test_a_section_given_twice_is_refused(first, second):
    """Plain YAML would keep the second TRAIN: section only, silently."""
    count()
    texts = [yaml.safe_dump(nested(u), default_flow_style=False) for u in (first, second)]
    sections = [set(nested(u)) for u in (first, second)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.yml"
        path.write_text(texts[0] + texts[1])
        result, _ = merge(cfg_from_file, str(path))
    if sections[0] & sections[1]:
        assert isinstance(result, ConfigError) and "twice" in str(result), result
    else:
        assert not isinstance(result, BaseException), result
