"""The dry run's time estimates, kept as data (issue 28): `imbalance run PARAMS --dry-run --record-estimate`
writes one entry per study to OUTPUTS/estimates.json, and the index of the committed studies
(`analysis.findings.index_markdown`) gives it as the time still needed by a study that has not started.

An entry is what the dry run measured here: its estimate in seconds (None when it could not time the point),
its sentence, the points and workers it assumed, the machine's cores, the day it was measured and the
machine's 1-minute load average then (a busy machine inflates the estimate).  The
file is data: read back, every entry is checked field by field, and a bad one is a ValueError naming it."""
from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

ESTIMATES_FILE = "estimates.json"
FIELDS = {"seconds": (float, int, type(None)), "text": str, "points": int, "workers": int, "cores": int,
          "machine": str, "measured_at": str, "load": (float, int)}


def record(outputs_dir, study: str, *, seconds: float | None, text: str, points: int, workers: int) -> Path:
    """Add or replace `study`'s entry in OUTPUTS/estimates.json (written whole, then renamed into place)."""
    path = Path(outputs_dir) / ESTIMATES_FILE
    entries = read(outputs_dir)
    entries[study] = {"seconds": None if seconds is None or not math.isfinite(seconds) else round(float(seconds), 1),
                      "text": text, "points": int(points), "workers": int(workers), "cores": os.cpu_count() or 1,
                      "machine": f"{platform.machine()} CPU, {os.cpu_count() or 1} cores",
                      "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                      "load": round(os.getloadavg()[0], 2)}   # other work on the machine slows a probe
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(outputs_dir) -> dict[str, dict]:
    """OUTPUTS/estimates.json's entries ({} when there is none), each checked against FIELDS."""
    path = Path(outputs_dir) / ESTIMATES_FILE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected an object of study -> estimate, got {type(entries).__name__}")
    for study, entry in entries.items():
        if not isinstance(entry, dict) or set(entry) != set(FIELDS):
            raise ValueError(f"{path}: entry {study!r} must have exactly the fields {', '.join(sorted(FIELDS))}")
        for name, kinds in FIELDS.items():
            if not isinstance(entry[name], kinds) or isinstance(entry[name], bool):
                raise ValueError(f"{path}: entry {study!r}, field {name!r}: expected {kinds}, got {entry[name]!r}")
    return entries
