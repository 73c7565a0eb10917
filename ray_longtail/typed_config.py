"""Frozen dataclasses built from nested dicts (YAML, `--set a.b=v` overrides), checked as they are built.

Generic: knows nothing of this project's sections (those are in `config.py`). A field declared with `choice(...)`
or `number(...)` carries its constraint in the dataclass metadata; `build` coerces each value to the field's type
hint, rejects unknown keys, checks every declared constraint (defaults included) and then the dataclass's own
`validate()` method, and raises `ConfigError` (or its `InvalidValueError`) naming the full dotted key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from ray_longtail.errors import ConfigError

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # exponent notation without a dot
_CHECK = "ray_longtail.check"  # dataclass field metadata key holding a _Choice or _Range


class InvalidValueError(ConfigError):
    """A well-typed value outside what its key allows. Section `validate` methods raise it with the key relative to
    the section; `build` prefixes the section, so every message names the full dotted key."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"config key {key!r} must be {expected}; got {value!r}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray workers despite the 3-argument __init__
        return type(self), (self.key, self.value, self.expected)


@dataclass(frozen=True)
class _Choice:
    options: tuple[str, ...]

    def expected(self) -> str:
        return "one of " + ", ".join(self.options)

    def ok(self, value: Any) -> bool:
        return any(re.fullmatch(re.escape(o).replace(re.escape("<n>"), "[0-9]+"), str(value)) for o in self.options)


@dataclass(frozen=True)
class _Range:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def expected(self) -> str:
        low, high = (self.ge, self.gt), (self.le, self.lt)
        if any(b is not None for b in low) and any(b is not None for b in high):
            left = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}"
            right = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})"
            return f"in {left}, {right}"
        for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                return f"{op} {bound:g}"
        return "a number"

    def ok(self, value: Any) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def _constrained(default: Any, check: _Choice | _Range) -> Any:
    """A dataclass field carrying `check` in its metadata, where `_validated` finds it."""
    if isinstance(default, list):  # mutable defaults need a factory; each instance gets its own copy
        return field(default_factory=lambda: list(default), metadata={_CHECK: check})
    return field(default=default, metadata={_CHECK: check})


def choice(default: Any, options: typing.Iterable[str]) -> Any:
    """A field whose value (or, for a list, each element) must be one of `options`; an option may contain `<n>`
    for a run of digits (e.g. "cuda:<n>"). Declared on the field so adding a constrained key stays one line."""
    return _constrained(default, _Choice(tuple(options)))


def number(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """A numeric field (int, float, optional or list of them, checked element-wise; None is always allowed when the
    type allows it) bounded by ge/gt (lower) and le/lt (upper)."""
    if (ge is not None and gt is not None) or (le is not None and lt is not None):
        raise ValueError("give at most one lower bound (ge|gt) and one upper bound (le|lt)")
    return _constrained(default, _Range(ge=ge, gt=gt, le=le, lt=lt))


def _check_field(key: str, value: Any, check: _Choice | _Range) -> None:
    """Raise InvalidValueError naming `key` when the coerced `value` breaks its declared constraint."""
    if value is None:
        return
    if isinstance(value, list):
        if not all(check.ok(v) for v in value):
            raise InvalidValueError(key, value, "a list of values " + check.expected())
    elif not check.ok(value):
        raise InvalidValueError(key, value, check.expected())



def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Return `value` coerced to type `tp` or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        return [_check_value(key, v, inner) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):  # YAML 1.1 reads 5e-5 as a string
            return float(value)
        raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass `cls` from nested `values`: keys known, types coerced, constraints checked."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; known keys here: {', '.join(sorted(names))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} is a section; give its keys, e.g. {full}.<key>=...")
            kwargs[key] = build(tp, value, prefix=f"{full}.")
        else:
            kwargs[key] = _check_value(full, value, tp)
    return _validated(cls(**kwargs), prefix)


def _validated(obj: Any, prefix: str) -> Any:
    """`obj` after its declared field constraints (defaults included) and its `validate` method pass."""
    for f in dataclasses.fields(obj):
        if _CHECK in f.metadata:
            _check_field(f"{prefix}{f.name}", getattr(obj, f.name), f.metadata[_CHECK])
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except InvalidValueError as exc:  # section rules name keys relative to the section
            raise InvalidValueError(f"{prefix}{exc.key}", exc.value, exc.expected) from None
    return obj


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it, section by section (neither is modified)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["embed.batch_size=256", "split.test_days=null"]` -> nested dict; values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value ({exc})") from exc
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return nested


def nest(dotted: str, value: Any) -> dict[str, Any]:
    """`nest("a.b", 1)` -> `{"a": {"b": 1}}`."""
    parts = dotted.split(".")
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out
