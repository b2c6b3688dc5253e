"""What is stored is what was trained: each done point's content digest, and records copies parsed as data.

A point's digest is the SHA-256 of the canonical JSON of its networks and their curves (sorted keys, floats
as Python's repr, networks in (method, repeat) order, fields that are None left out, so that a column added
later, NULL in older rows, changes no digest).  The store keeps it in the `points` table and in the point's
records copy (outputs/<study>/records/<point_id>.json); every reader recomputes it (`Store.verify`).

Records copies travel in git, so they are untrusted input: `parse_copy` checks one against the schema
(imbalance.schema) before anything is inserted, with SQL parameters only, never a key from the file as
a column name.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from imbalance.schema import COPY_FORMAT, CURVE_FIELDS, JSON_FIELDS, NETWORK_FIELDS

# the points table's columns, as a copy's "point" object may hold them (and nothing else)
POINT_COLUMNS = ("study", "point_id", "status", "attempts", "error", "worker", "started_at", "finished_at",
                 "heartbeat_at", "digest")
COPY_KEYS = ("format", "study", "point_id", "point", "registered", "networks", "digest")
REGISTERED_KEYS = ("study", "params", "created_at")
MAX_COPY_BYTES = 200_000_000


def canonical(value: Any) -> str:
    """Sorted keys, no spaces, floats as repr (json's own), NaN and infinities as json writes them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def network_content(network: dict[str, Any], curve) -> dict[str, Any]:
    """A network's content as digested: its fields (JSON fields decoded) without its row id and without
    None values, and its curve as rows of CURVE_FIELDS."""
    content = {k: v for k, v in network.items() if k not in ("id", "curve") and v is not None}
    content["curve"] = [[c.get(f) for f in CURVE_FIELDS] if isinstance(c, dict) else list(c) for c in curve]
    return content


def point_digest(networks: list[dict[str, Any]]) -> str:
    """The digest of a point's networks (each a dict of NETWORK_FIELDS with JSON fields decoded and a 'curve')."""
    contents = sorted((network_content(n, n.get("curve") or []) for n in networks),
                      key=lambda c: (str(c.get("method")), _order(c.get("repeat"))))
    return hashlib.sha256(canonical(contents).encode("utf-8", "surrogatepass")).hexdigest()


def _order(value):
    return value if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)) else -1


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 15]}...({len(text):,} characters)"


def parse_copy(raw: Any, path: str | Path, *, study: str | None = None) -> dict[str, Any]:
    """Check a records copy (already JSON-decoded) against the schema; return it, or raise a one-line
    ValueError naming the file and what is wrong."""
    where = f"{path}: not a valid point copy"
    if not isinstance(raw, dict) or raw.get("format") != COPY_FORMAT:
        raise ValueError(f"{where}: expected a JSON object with format {COPY_FORMAT!r}")
    extra = [k for k in raw if k not in COPY_KEYS]
    if extra:
        raise ValueError(f"{where}: unknown key {_short(extra[0])}; expected keys from {', '.join(COPY_KEYS)}")
    point_id, owner = raw.get("point_id"), raw.get("study")
    if not isinstance(point_id, str) or not isinstance(owner, str):
        raise ValueError(f"{where}: 'study' and 'point_id' must be strings")
    if study is not None and owner != study:
        raise ValueError(f"{path}: a copy of study {_short(owner)}, not {study!r}")
    if Path(path).name != f"{point_id}.json":
        raise ValueError(f"{where}: it holds point {_short(point_id)}, but its file name says {Path(path).stem!r}")
    point = raw.get("point")
    if not isinstance(point, dict):
        raise ValueError(f"{where}: 'point' must be an object")
    bad = [k for k in point if k not in POINT_COLUMNS]
    if bad:
        raise ValueError(f"{where}: unknown key {_short(bad[0])} in 'point'; expected keys from "
                         f"{', '.join(POINT_COLUMNS)}")
    if point.get("study") != owner or point.get("point_id") != point_id or point.get("status") != "done":
        raise ValueError(f"{where}: its 'point' must be the done point {point_id!r} of study {owner!r}")
    for key, value in point.items():
        if value is not None and not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError(f"{where}: point field {key!r} is {_short(value)}; expected a string or an integer")
    registered = raw.get("registered")
    if registered is not None:
        if not isinstance(registered, dict) or sorted(registered) != sorted(REGISTERED_KEYS) \
                or not all(isinstance(registered[k], str) for k in REGISTERED_KEYS) or registered["study"] != owner:
            raise ValueError(f"{where}: 'registered' must be the studies row of {owner!r} "
                             f"({', '.join(REGISTERED_KEYS)}, strings)")
        try:
            json.loads(registered["params"], parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise ValueError(f"{where}: 'registered' params is not JSON") from None
    networks = raw.get("networks")
    if not isinstance(networks, list) or not networks:
        raise ValueError(f"{where}: 'networks' must be a non-empty list (a done point has trained networks)")
    for i, network in enumerate(networks):
        _check_network(network, f"{where}: network {i}", owner, point_id)
    digest = raw.get("digest")
    if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
        raise ValueError(f"{where}: 'digest' must be 64 hex digits")
    return raw


def _no_constant(name):
    raise ValueError(name)


def _check_network(network: Any, where: str, study: str, point_id: str) -> None:
    if not isinstance(network, dict):
        raise ValueError(f"{where}: expected an object")
    allowed = ("id", *NETWORK_FIELDS, "curve")
    extra = [k for k in network if k not in allowed]
    if extra:
        raise ValueError(f"{where}: unknown field {_short(extra[0])}; expected fields from imbalance.schema.NETWORK_FIELDS")
    if network.get("study") != study or network.get("point_id") != point_id:
        raise ValueError(f"{where}: study and point_id must be {study!r} and {point_id!r}")
    if not isinstance(network.get("id"), int) or isinstance(network.get("id"), bool) or network["id"] < 1:
        raise ValueError(f"{where}: 'id' must be a positive integer")
    if not isinstance(network.get("method"), str) or not isinstance(network.get("repeat"), int):
        raise ValueError(f"{where}: 'method' (a string) and 'repeat' (an integer) are required")
    for key, value in network.items():
        if key in ("id", "curve") or value is None:
            continue
        if key in JSON_FIELDS:
            if not isinstance(value, (list, dict)):
                raise ValueError(f"{where}: field {key!r} must be a list or an object")
        elif not isinstance(value, (str, int, float)):
            raise ValueError(f"{where}: field {key!r} is {_short(value)}; expected a number or a string")
    curve = network.get("curve") or []
    if not isinstance(curve, list):
        raise ValueError(f"{where}: 'curve' must be a list")
    for entry in curve:
        if not isinstance(entry, dict) or any(k not in CURVE_FIELDS for k in entry) \
                or not isinstance(entry.get("iteration"), int) \
                or not all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values()):
            raise ValueError(f"{where}: curve entry {_short(entry)}: expected numbers for "
                             f"{', '.join(CURVE_FIELDS)}, 'iteration' an integer")


def read_json(path: str | Path, *, limit: int = MAX_COPY_BYTES) -> Any:
    """A JSON file as data: size capped, nesting too deep for Python refused in one line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise ValueError(f"{path}: {size:,} bytes, more than the {limit:,} a records file may hold")
        return json.loads(path.read_text())
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be a records file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({' '.join(str(exc).split())})") from None
