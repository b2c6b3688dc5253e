"""Seeds: every random draw of the study derives from (study seed, grid point, repeat, purpose).

Torch-free, and imports nothing from the package: the trainer (`training.pipeline`) draws with these
functions and the export (`study.store.readable`) reports with them, so the two cannot disagree.

The naming rule of a network's mini-batch stream (`batch_stream`): a single-stage network draws its
batches from its sampling's stream ('none', 'ros', 'class-aware', ...), shared by every method with
that sampling (so baseline, focal and la-loss see the same batches: the pairing); a second stage
(two-phase, cRT) draws from a stream named after its method. A learning-rate candidate's run k > 0
(best-of-n selection) adds k to every seed of that run; run 0 keeps the shared seeds.
"""
from __future__ import annotations

import hashlib


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts, stable across processes and machines."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def run_parts(run: int) -> tuple:
    """Seed parts of a candidate's run: none for run 0, so it keeps the seeds every method shares (paired)."""
    return () if run == 0 else (run,)


def batch_stream(*, method: str, sampling: str, second_stage: str | None) -> str:
    """The name of the mini-batch stream a trained method's final network draws from (see the module)."""
    return method if second_stage else sampling


def subset_seed(seed: int, point_id: str, repeat: int) -> int:
    """The seed of repeat `repeat`'s imbalanced subset, shared by every method at the point."""
    return derive_seed(seed, point_id, repeat, "subset")


def init_seed(seed: int, point_id: str, repeat: int, run: int = 0) -> int:
    """The seed of a network's initial weights, shared by every method of a repeat (and run)."""
    return derive_seed(seed, point_id, repeat, "init", *run_parts(run))


def batch_seed(seed: int, point_id: str, repeat: int, stream: str, run: int = 0) -> int:
    """The seed of a network's mini-batch order on `stream` (`batch_stream`)."""
    return derive_seed(seed, point_id, repeat, stream, "batches", *run_parts(run))


def sample_seed(seed: int, point_id: str, repeat: int, stream: str) -> int:
    """The seed of a resampling draw (ros, rus, class-aware, ...) on `stream`."""
    return derive_seed(seed, point_id, repeat, stream, "sample")


def number_text(x: float) -> str:
    """A grid value as a point id writes it: 10.0 -> '10', 0.5 -> '0.5' (repr: exact, never rounded)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def point_id(imbalance: str, *, rho: float | None = None, mu: float | None = None, level: float | None = None) -> str:
    """A grid point's stable id, e.g. 'step_rho=10_mu=0.5', 'linear_rho=10', 'natural': the executed notebook's
    name and a part of every seed of the point, so one rule for the runner and a notebook run alone."""
    parts = [imbalance] + ([f"rho={number_text(rho)}"] if rho is not None else [])
    parts += [f"mu={number_text(mu)}"] if mu is not None else []
    parts += [f"level={number_text(level)}"] if level is not None else []
    return "_".join(parts)
