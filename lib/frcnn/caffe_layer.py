"""What every Caffe Python layer of the project shares: naming, param_str, error reports.

Python layers run in two hosts.  Under pycaffe an exception reaches the caller with its
traceback; under the ``caffe`` command line it does not (Caffe aborts with a bare
"error_already_set").  ``reports_errors`` therefore prints the error, with the layer's name,
to stderr before re-raising it, and prefixes the message with the layer so both hosts say
where it happened.  The project's Caffe build sets ``self.layer_name`` from the prototxt;
other builds fall back to the class name.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable

from frcnn.layer_params import parse_param_str


def layer_label(layer: Any) -> str:
    """"layer 'name' (module.Class)" for messages."""
    cls = type(layer)
    name = getattr(layer, "layer_name", None) or "?"
    return f"layer '{name}' ({cls.__module__}.{cls.__name__})"


def reports_errors(method: Callable) -> Callable:
    """Decorate setup/reshape/forward/backward: name the layer in any error, print it."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            label = layer_label(self)
            message = str(e)
            if label not in message:
                message = f"{label}: {message}"
                try:
                    new = type(e)(message)
                except Exception:  # an exception type with another signature
                    new = None
            else:
                new = None
            print(f"[frcnn] error in {method.__name__} of {label}: {type(e).__name__}: "
                  f"{str(e) if label in str(e) else message}", file=sys.stderr, flush=True)
            if new is not None:
                raise new from e
            raise

    return wrapper


def layer_params(layer: Any) -> dict[str, Any]:
    """Parse ``layer.param_str`` against the table entry for the layer's class.

    The entry is the class's ``PARAMS`` attribute when it has one (a class defined in one
    module and exposed by another), else 'module.Class'.
    """
    cls = type(layer)
    key = getattr(cls, "PARAMS", None) or f"{cls.__module__}.{cls.__name__}"
    return parse_param_str(getattr(layer, "param_str", ""), key,
                           getattr(layer, "layer_name", "") or "")


def phase_key(layer: Any) -> str:
    """'TRAIN' or 'TEST' from the layer's phase (an int in pycaffe: TRAIN 0, TEST 1)."""
    phase = getattr(layer, "phase", 0)
    phase = int(phase) if not isinstance(phase, str) else {"TRAIN": 0, "TEST": 1}[phase]
    return "TRAIN" if phase == 0 else "TEST"


def check_bottoms(layer: Any, bottom: Any, counts: tuple[int, ...], names: str) -> None:
    """Raise ValueError unless len(bottom) is one of counts."""
    if len(bottom) not in counts:
        raise ValueError(f"needs {' or '.join(map(str, counts))} bottoms ({names}), "
                         f"got {len(bottom)}")


def check_tops(layer: Any, top: Any, counts: tuple[int, ...], names: str) -> None:
    """Raise ValueError unless len(top) is one of counts."""
    if len(top) not in counts:
        raise ValueError(f"needs {' or '.join(map(str, counts))} tops ({names}), got {len(top)}")
