"""Values as tagged JSON, both ways, standard library only.

Plain JSON carries None, bools, ints, strings and lists; every other value is an object
with one tag key: {"f": float.hex}, {"i": hex} (an int too long for decimal), {"b":
base64}, {"t": tuple}, {"d": [[k, v], ...]}, {"s": set}, {"fs": frozenset}, {"c": [re,
im]}, {"x": type name} (a value that cannot cross: it equals nothing).

``decode`` is strict: it builds plain built-in values only, so no object of the
encoder's making (say, one whose ``__eq__`` always says True) can reach the decoder's side.
"""

import base64
import json
import numbers
import operator

MAX_DEPTH = 100
MAX_NODES = 1_000_000
BIG_INT_DIGITS = 4000  # below int's str conversion limit (4300)


class DecodeError(ValueError):
    """The text is not a value this codec writes."""


class TooLarge(ValueError):
    pass


class Unencodable:
    """Stands for a value that could not cross (a generator, an object): equals nothing."""

    __slots__ = ("what",)

    def __init__(self, what):
        self.what = what

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<unencodable {self.what}>"


def dumps(value, strict=False):
    """One line of JSON for ``value``.  An unencodable part becomes an {"x": ...} marker,
    or raises ValueError where ``strict``."""
    return json.dumps(to_tree(value, strict), separators=(",", ":"), allow_nan=False)


def to_tree(value, strict=False):
    """``value`` as plain JSON data (see dumps)."""
    try:
        tree = _encode(value, 0, [MAX_NODES])
    except TooLarge as err:
        tree = {"x": str(err)}
    if strict and _has_marker(tree):
        raise ValueError(f"cannot encode {type(value).__name__} value {value!r:.200}")
    return tree


def _has_marker(tree):
    if type(tree) is list:
        return any(_has_marker(v) for v in tree)
    if type(tree) is dict:
        return "x" in tree or any(_has_marker(v) for v in tree.values())
    return False


def loads(text):
    """The value of one line written by ``dumps`` (DecodeError if it is not one)."""
    return from_tree(parse(text))


def parse(text):
    """Strict JSON: no NaN/Infinity literals, no bare floats (the codec tags its floats)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_no_float)
    except (ValueError, RecursionError) as err:
        raise DecodeError(f"not JSON: {err}") from None


def from_tree(tree):
    """The plain value of JSON data written by ``to_tree`` (DecodeError if it is not such data)."""
    return _decode(tree, 0, [MAX_NODES])


def _no_constant(name):
    raise DecodeError(f"bare {name}")


def _no_float(text):
    raise DecodeError(f"bare float {text}")


def _tick(depth, budget):
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLarge("value too large")
    if depth > MAX_DEPTH:
        raise TooLarge("value nested too deep")


def _encode(value, depth, budget):
    _tick(depth, budget)
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is str:
        return value
    if kind is int:
        return _encode_int(value)
    if kind is float:
        return {"f": value.hex()}
    if kind is list:
        return [_encode(v, depth + 1, budget) for v in value]
    if kind is tuple:
        return {"t": [_encode(v, depth + 1, budget) for v in value]}
    if kind is dict:
        return {"d": [[_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)] for k, v in value.items()]}
    if kind is set or kind is frozenset:
        return {"s" if kind is set else "fs": [_encode(v, depth + 1, budget) for v in value]}
    if kind is bytes or kind is bytearray:
        return {"b": base64.b64encode(bytes(value)).decode("ascii")}
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}
    return _encode_other(value, depth, budget)


def _encode_int(value):
    if abs(value).bit_length() < BIG_INT_DIGITS * 3:  # fewer than 4300 decimal digits
        return value
    return {"i": hex(value)}


def _encode_other(value, depth, budget):
    """Subclasses and number-likes (numpy scalars, IntEnum) as the plain value they stand for."""
    for base in (bool, int, float, complex, str, bytes, tuple, list, dict, frozenset, set):
        if isinstance(value, base):
            return _encode(base(value), depth, budget)
    try:
        if hasattr(type(value), "__index__"):
            return _encode_int(operator.index(value))
        if isinstance(value, numbers.Real):
            return {"f": float(value).hex()}
    except Exception:  # noqa: BLE001 - a number-like that will not convert cannot cross
        pass
    return {"x": type(value).__name__}


_TAGS = {"f", "i", "b", "t", "d", "s", "fs", "c", "x"}


def _decode(tree, depth, budget):
    try:
        _tick(depth, budget)
    except TooLarge as err:
        raise DecodeError(str(err)) from None
    kind = type(tree)
    if tree is None or kind in (bool, int, str):
        return tree
    if kind is list:
        return [_decode(v, depth + 1, budget) for v in tree]
    if kind is not dict or len(tree) != 1:
        raise DecodeError(f"unexpected {kind.__name__}")
    (tag, body), = tree.items()
    if tag not in _TAGS:
        raise DecodeError(f"unknown tag {tag!r}")
    try:
        return _decode_tagged(tag, body, depth, budget)
    except (TypeError, ValueError, OverflowError) as err:
        if isinstance(err, DecodeError):
            raise
        raise DecodeError(f"bad {tag!r} value: {err}") from None


def _decode_tagged(tag, body, depth, budget):
    if tag in ("t", "s", "fs", "d"):
        items = _items(body, depth, budget)
        if tag == "t":
            return tuple(items)
        if tag == "s":
            return set(items)
        if tag == "fs":
            return frozenset(items)
        if not all(type(pair) is list and len(pair) == 2 for pair in items):
            raise DecodeError("a dict needs [key, value] pairs")
        return {key: value for key, value in items}
    if tag == "x":
        return Unencodable(_text(body))
    if tag == "f":
        return float.fromhex(_text(body))
    if tag == "i":
        return int(_text(body), 16)
    if tag == "b":
        return base64.b64decode(_text(body), validate=True)
    if type(body) is not list or len(body) != 2:
        raise DecodeError("a complex needs [real, imag]")
    return complex(float.fromhex(_text(body[0])), float.fromhex(_text(body[1])))


def _items(body, depth, budget):
    if type(body) is not list:
        raise DecodeError("expected a list")
    return [_decode(v, depth + 1, budget) for v in body]


def _text(body):
    if type(body) is not str or len(body) > 100_000:
        raise DecodeError("expected a short string")
    return body

