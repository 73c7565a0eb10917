"""A/B variants of the Serve app: named arms with traffic shares, each a run (the app's own or another) with an
optional tail_weight and re-rank method, and the sticky assignment of users to them.

    args:
      run: artifacts/latest
      variants:
        - {name: control, share: 0.5}                    # the run as it is (its selected tail_weight)
        - {name: tail, share: 0.5, tail_weight: 0.7}     # same run, more tail
        - {name: other, share: 0, run: artifacts/run-b}  # another run (loaded beside the first; share 0 = off)

Assignment hashes (salt, user_id) with SHA-256 into [0, 1) and walks the cumulative shares, so a user keeps their
variant across requests, replicas and restarts, and a new salt reshuffles everyone. A request without a user_id
has nothing to stick to: it is assigned by its request_id.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from ray_longtail.config import RERANK_METHODS
from ray_longtail.errors import UserError

DEFAULT_VARIANT = "default"
VARIANT_KEYS = {"name", "share", "run", "tail_weight", "rerank_method"}


@dataclass(frozen=True)
class Variant:
    """One arm: `run` None = the app's run; `tail_weight` None = that run's selected weight; `rerank_method`
    None = the run's `rerank.method`."""

    name: str
    share: float
    run: str | None = None
    tail_weight: float | None = None
    rerank_method: str | None = None

    def describe(self, app_run: str) -> dict[str, Any]:
        return {"name": self.name, "share": self.share, "run": self.run or app_run,
                "tail_weight": self.tail_weight, "rerank_method": self.rerank_method}


def _variant(raw: Any, position: int) -> Variant:
    if not isinstance(raw, dict):
        raise UserError(f"variants[{position}] must be a mapping with keys {sorted(VARIANT_KEYS)}, got {raw!r}")
    unknown = set(raw) - VARIANT_KEYS
    if unknown:
        raise UserError(f"variants[{position}] has unknown keys {sorted(unknown)}; known: {sorted(VARIANT_KEYS)}")
    name = str(raw.get("name") or "").strip()
    if not name or len(name) > 64:
        raise UserError(f"variants[{position}] needs a name of 1..64 characters")
    try:
        share = float(raw.get("share", 0.0))
        weight = None if raw.get("tail_weight") is None else float(raw["tail_weight"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"variant {name!r}: share and tail_weight must be numbers ({exc})") from exc
    if not (math.isfinite(share) and share >= 0):
        raise UserError(f"variant {name!r}: share must be >= 0, got {raw.get('share')!r}")
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise UserError(f"variant {name!r}: tail_weight must be in [0, 1], got {weight}")
    method = raw.get("rerank_method")
    if method is not None and method not in RERANK_METHODS:
        raise UserError(f"variant {name!r}: rerank_method must be one of {list(RERANK_METHODS)}, got {method!r}")
    return Variant(name=name, share=share, run=None if raw.get("run") is None else str(raw["run"]),
                   tail_weight=weight, rerank_method=method)


def parse_variants(raw: list[dict] | None) -> tuple[Variant, ...]:
    """Validated variants with shares normalised to sum to 1; none given = one `default` arm taking all traffic.
    Raises UserError on duplicate names, unknown keys, bad values or shares summing to 0."""
    if not raw:
        return (Variant(name=DEFAULT_VARIANT, share=1.0),)
    if not isinstance(raw, list):
        raise UserError(f"variants must be a list of mappings, got {type(raw).__name__}")
    variants = [_variant(item, i) for i, item in enumerate(raw)]
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise UserError(f"variant names must be unique, got {names}")
    total = sum(v.share for v in variants)
    if total <= 0:
        raise UserError("variant shares sum to 0: give at least one variant a positive share")
    return tuple(Variant(name=v.name, share=v.share / total, run=v.run, tail_weight=v.tail_weight,
                         rerank_method=v.rerank_method) for v in variants)


def unit_hash(salt: str, key: str) -> float:
    """A stable uniform number in [0, 1) for `key` (the first 8 bytes of SHA-256(salt, key))."""
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(variants: tuple[Variant, ...], key: str, salt: str) -> Variant:
    """The variant of `key` (a user id): the first whose cumulative share exceeds the key's hash."""
    point, cumulative = unit_hash(salt, key), 0.0
    for variant in variants:
        cumulative += variant.share
        if point < cumulative and variant.share > 0:
            return variant
    return next(v for v in reversed(variants) if v.share > 0)  # float rounding at the top end
