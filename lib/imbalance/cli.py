"""`imbalance run | status | export | report | rebuild | conclusions | plan-repeats | explore`: the command line.

Exit codes: 0 success; 1 some grid points failed (or the grid was stopped because its first points
failed alike); 2 a user error: bad params, missing or damaged data, notebook or kernel, an
unwritable outputs folder, a damaged or unreadable database, an unreachable Dask scheduler
(one line on stderr, no traceback, before any training); 130 interrupted (Ctrl-C: running points
are given back, finished ones kept).  Tracebacks are for bugs.
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from imbalance.study.params import expand_grid, load_params
from imbalance.study.store import error_line


def _parser() -> argparse.ArgumentParser:
    from imbalance import __version__
    parser = argparse.ArgumentParser(prog="imbalance", description="Class-imbalance studies of CNNs.")
    parser.add_argument("--version", action="version", version=f"imbalance {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def study_command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("params", type=Path, help="params file, e.g. params/quick.yaml")
        sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a params key (value parsed as YAML), e.g. --set rho=[10,50]")
        sub.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                         help="import MODULE first: it registers methods (imbalance.registry.register_method); "
                              "the training notebooks import it too")
        sub.add_argument("--outputs", default="outputs", metavar="DIR",
                         help="results go to DIR/<study>/ (default: outputs)")
        return sub

    run = study_command("run", "train every grid point not yet done")
    run.add_argument("--executor", default="local", metavar="local|dask|dask://HOST:PORT",
                     help="where notebooks run (default: local worker processes)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="parallel grid points (default: cores // 2; 1 for cuda)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--dry-run", action="store_true", help="print the grid, counts and a time estimate")
    run.add_argument("--record-estimate", action="store_true",
                     help="with --dry-run: also write the estimate to OUTPUTS/estimates.json, where the index of "
                          "the committed studies gives it as the time a study not started still needs")
    run.add_argument("--notebooks", default="notebooks", metavar="DIR",
                     help="where training notebooks live (default: notebooks)")
    run.add_argument("--kernel", default="imbalance", help="Jupyter kernel name (default: imbalance)")
    run.add_argument("--max-attempts", type=int, default=2, metavar="N",
                     help="tries per grid point before it is marked failed (default: 2)")
    run.add_argument("--yes", action="store_true",
                     help="run a huge grid (over 100,000 trained networks) without asking")
    run.add_argument("--until-decided", action="store_true",
                     help="then add repeats where comparisons are open, by the internal pilot design "
                          "(imbalance.analysis.planning), up to --max-repeats, and stop")
    run.add_argument("--max-repeats", type=int, default=None, metavar="N",
                     help="with --until-decided: at most N repeats per point (required)")
    study_command("status", "count done / running / failed / pending grid points")
    export = study_command("export", "write the study's records to a .csv (or .parquet) file")
    export.add_argument("out", type=Path, help="output file, e.g. results.csv")
    report = study_command("report", "recreate the figures and outputs/<study>/report.html from the database")
    report.add_argument("--kernel", default="imbalance", help="Jupyter kernel name (default: imbalance)")
    report.add_argument("--with", dest="others", type=Path, nargs="+", action="extend", default=[],
                        metavar="OTHER_PARAMS", help="further studies (their databases under --outputs) read "
                        "with this one by the conclusions that compare datasets, imbalance types or levels")
    conclusions = study_command("conclusions", "check the paper's conclusions C1-C7 against the study's records")
    conclusions.add_argument("--with", dest="others", type=Path, nargs="+", action="extend", default=[],
                             metavar="OTHER_PARAMS", help="further studies (their databases under --outputs) "
                             "for the checks that compare datasets or imbalance types")
    study_command("plan-repeats", "list each undecided comparison with the repeats that would decide it "
                                  "and their training time")
    study_command("rebuild", "recreate outputs/<study>/results.sqlite from its records copies "
                             "(outputs/<study>/records/*.json); the old database is moved aside")
    explore = commands.add_parser("explore", help="serve the explorer (notebooks/explore.ipynb) as a web app on "
                                  "localhost with Voila, without JupyterLab; Ctrl-C stops it")
    explore.add_argument("target", metavar="PARAMS|STUDY",
                         help="a params file (its study opens first), e.g. params/quick.yaml, or a study name")
    explore.add_argument("--outputs", default="outputs", metavar="DIR",
                         help="the studies are DIR/<study>/results.sqlite (default: outputs)")
    explore.add_argument("--notebooks", default="notebooks", metavar="DIR",
                         help="where explore.ipynb lives (default: notebooks)")
    explore.add_argument("--port", type=int, default=8866, help="localhost port (default: 8866)")
    explore.add_argument("--kernel", default="imbalance", help="Jupyter kernel name (default: imbalance)")
    explore.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "explore":
        try:
            return _explore(args)
        except (ValueError, OSError) as exc:
            print(f"imbalance: error: {_one_line(exc)}", file=sys.stderr)
            return 2
    try:
        params = load_params(args.params, args.overrides, plugins=args.plugins)   # plugins: loaded by file path
        _check_outputs(args.outputs)
        if args.command == "run":
            from imbalance.study.runner import run_study
            if args.until_decided and (args.max_repeats is None or args.max_repeats < 3):
                raise ValueError("--until-decided needs --max-repeats N with N >= 3")
            summary = run_study(params, executor=args.executor, workers=args.workers, quiet=args.quiet,
                                outputs_dir=args.outputs, notebooks_dir=args.notebooks,
                                kernel_name=args.kernel, max_attempts=args.max_attempts,
                                dry_run=args.dry_run, record_estimate=args.record_estimate, yes=args.yes)
            if args.until_decided and not summary.failed:
                _until_decided(params, args)
            return 1 if summary.failed else 0
        from imbalance.study.store import Store, rebuild_database
        db = Path(args.outputs) / params.study / "results.sqlite"
        if args.command == "rebuild":
            result = rebuild_database(db.parent, params.study)
            print(f"rebuilt {result.path}: {result.points} done grid points, {result.networks} networks, from "
                  f"{db.parent / 'records'}" + (f"; the replaced database is kept as {result.kept}" if result.kept else "")
                  + (f"; {len(result.unsealed)} copies were written before digests and are taken as they are"
                     if result.unsealed else ""))
            return 0
        if args.command == "report":
            from imbalance.analysis.report import write_report
            for path, p in [(args.params, params)] + [(path, load_params(path)) for path in args.others]:
                _ran(Path(args.outputs) / p.study / "results.sqlite", p, path)   # names the real params file
            with Store(db, mode="read") as store:   # quick_check and digests: a damaged database stops here
                store.verify(params.study)
            others = [load_params(path).study for path in args.others]
            html = write_report(params.study, args.outputs, kernel_name=args.kernel, with_studies=others,
                                grid_points=len(expand_grid(params)))
            print(f"figures in {html.parent / 'figures'}; report: {html}")
            return 0
        if args.command == "conclusions":
            return _conclusions(params, args)
        if args.command == "plan-repeats":
            return _plan_repeats(params, args)
        if args.command == "status" and not db.exists():
            n = len(expand_grid(params))
            print(f"{params.study}: {n} grid points: 0 done, 0 running, 0 failed, {n} pending (not run yet)")
            return 0
        _ran(db, params, args.params)
        with Store(db, mode="read") as store:
            if args.command == "status":
                return _status(store, params)
            n = store.export(params.study, args.out)
            print(f"wrote {n} records of study {params.study} to {args.out}")
            return 0
    except (ValueError, OSError, sqlite3.DatabaseError) as exc:  # user errors: one line, no traceback
        print(f"imbalance: error: {_named(exc, args)}", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"imbalance: error: {args.params}: a value nested too deeply (a params file, --set value or records "
              "file holds settings, not thousands of levels)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imbalance: interrupted; finished points are kept, run again to resume", file=sys.stderr)
        return 130


def _check_outputs(outputs) -> None:
    """--outputs must lead somewhere: a symlink loop (or a file) is refused in one line."""
    if "\0" in str(outputs):
        raise ValueError(f"--outputs {str(outputs)!r}: a path with a NUL byte (\\0); pass a folder")
    try:
        Path(outputs).resolve(strict=False)
        if Path(outputs).exists() and not Path(outputs).is_dir():
            raise ValueError(f"--outputs {outputs}: not a folder")
    except (RuntimeError, OSError) as exc:    # "Symlink loop" (RuntimeError before Python 3.13)
        raise ValueError(f"--outputs {outputs}: cannot be resolved ({' '.join(str(exc).split())}); "
                         "pass a folder") from None


def _conclusions(params, args) -> int:
    """Print C1-C7; 'not enough data' is a verdict, not an error (exit 0)."""
    from imbalance.analysis.conclusions import check_all, design_gaps, design_gaps_text, format_conclusions
    from imbalance.analysis.frames import load_study
    studies = [(args.params, params)] + [(path, load_params(path)) for path in args.others]
    for path, p in studies:
        _ran(Path(args.outputs) / p.study / "results.sqlite", p, path)
    (records, curves), *others = [load_study(p.study, args.outputs) for _, p in studies]
    others = [r for r, _ in others]
    gaps = design_gaps(records, curves, others=others)     # only what the study's design can test (issue 26)
    testable = [r for r in check_all(records, curves, others=others) if r.id not in gaps]
    if testable:
        print(format_conclusions(testable))
    if gaps:
        print(("\n" if testable else "") + design_gaps_text(gaps))
    return 0


def _ran(db: Path, params, path) -> None:
    """A study's database must exist: else say so, naming the params file that runs it."""
    if not db.is_file():
        raise FileNotFoundError(f"{db} not found: study {params.study!r} has not run yet (imbalance run {path})")


def _loaded(params, args):
    from imbalance.analysis.frames import load_study
    _ran(Path(args.outputs) / params.study / "results.sqlite", params, args.params)
    return load_study(params.study, args.outputs)


def _plan_repeats(params, args) -> int:
    """Print the repeats that would decide each undecided comparison (imbalance.analysis.planning)."""
    from imbalance.analysis.planning import attempt_repeats, format_plan, plan_repeats
    from imbalance.study.store import point_seconds
    records, _ = _loaded(params, args)
    wall = point_seconds(Path(args.outputs) / params.study / "results.sqlite", params.study)   # measured, batched
    print(format_plan(plan_repeats(records, margin=params.margins["roc_auc"], point_seconds=wall or None,
                                   attempt_repeats=attempt_repeats(expand_grid(params))), study=params.study))
    return 0


def _until_decided(params, args) -> None:
    """The internal pilot: final n per point from the pilot's (blinded) variance, recorded first, trained once,
    then stop.  An interrupted run resumes toward the recorded final n (the design is never re-estimated)."""
    from imbalance.analysis.frames import counted
    from imbalance.analysis.planning import DESIGN_FILE, internal_pilot_targets, read_design, write_design
    from imbalance.study.runner import extend_repeats
    study_dir = Path(args.outputs) / params.study
    recorded = read_design(study_dir)
    if recorded is not None:     # the design re-estimates once: a second look at the data would bend its error rates
        if recorded["max_repeats"] != args.max_repeats:
            raise ValueError(f"--max-repeats: {args.max_repeats} given, but {study_dir / DESIGN_FILE} records the "
                             f"design made with {recorded['max_repeats']}; the design is set once, so give "
                             f"--max-repeats {recorded['max_repeats']}")
        targets = {p: v["final"] for p, v in recorded["points"].items()}
        records, _ = _loaded(params, args)
        have = records.groupby("point_id")["repeat"].nunique()
        left = {p: n for p, n in targets.items() if n > int(have.get(p, 0))}
        if not left:
            print(f"until decided: the internal pilot already set each point's final n ({study_dir / DESIGN_FILE}) "
                  "and every point has it; nothing to add")
            return
        print(f"until decided: resuming the recorded design ({study_dir / DESIGN_FILE}): {counted(len(left), 'point')} still "
              "short of their final n")
    else:
        if args.dry_run and not (study_dir / "results.sqlite").is_file():
            print("until decided (dry run): the pilot (the study's own repeats) has not run yet, so no final n yet")
            return
        records, _ = _loaded(params, args)
        pilot = {str(k): int(v) for k, v in records.groupby("point_id")["repeat"].nunique().items()}
        targets = internal_pilot_targets(records, margin=params.margins["roc_auc"], max_repeats=args.max_repeats)
        if args.dry_run:       # what the design would set; nothing trained, nothing written
            grow = {p: n for p, n in targets.items() if n > pilot.get(p, 0)}
            print(f"until decided (dry run, internal pilot): {len(grow)} of {len(targets)} points would grow: "
                  + (", ".join(f"{p} {pilot.get(p, 0)} -> {n}" for p, n in sorted(grow.items())) or "none"))
            return
        write_design(study_dir, targets=targets, pilot=pilot, max_repeats=args.max_repeats, metric="roc_auc",
                     margin=params.margins["roc_auc"])      # first: an interrupted run resumes toward it
    if args.dry_run:
        return
    added = extend_repeats(params, targets, executor=args.executor, workers=args.workers, quiet=args.quiet,
                           outputs_dir=args.outputs, notebooks_dir=args.notebooks, kernel_name=args.kernel)
    print(f"until decided (internal pilot, blinded variance re-estimation): {len(added)} of {len(targets)} points "
          f"grew, {sum(added.values())} networks added; each comparison is tested once, at its final n; "
          f"design in {study_dir / DESIGN_FILE}")


def _named(exc: BaseException, args) -> str:
    """_one_line, and for the errors whose text names no file ("embedded null byte", an SQLite error that
    escaped the store) the path it concerns."""
    text = _one_line(exc)
    if text == "embedded null byte":
        given = [f"{name} {value!r}" for name, value in (("PARAMS", args.params), ("--outputs", args.outputs),
                 *(("--plugin", p) for p in args.plugins or ()), ("OUT", getattr(args, "out", None)))
                 if value is not None and "\0" in str(value)]
        return (f"{', '.join(given) or 'a path given'}: a path with a NUL byte (\\0), which no file system "
                "takes; pass the path without it")
    if isinstance(exc, sqlite3.Error):
        try:
            db = Path(args.outputs) / load_params(args.params).study / "results.sqlite"
        except (ValueError, OSError):
            db = Path(args.outputs)
        return f"{db}: {text} (SQLite); nothing was changed: try again, or see `imbalance status {args.params}`"
    return text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, ConnectionError)) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or text}"   # e.g. PermissionError: name the path
    return text


def _status(store, params) -> int:
    from imbalance.study.runner import _check_same_study
    _check_same_study(params, store)   # a database of other settings: its points are not this file's (issue 26)
    verified = store.verify(params.study)
    ids = [p.point_id for p in expand_grid(params)]
    counts = store.status(params.study, ids)
    print(f"{params.study}: {len(ids)} grid points: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for row in store.points(params.study):
        if row["status"] == "failed" and row["point_id"] in ids:
            print(f"  failed {row['point_id']} ({row['attempts']} attempts): {error_line(row['error'])}")
    if verified.unchecked:
        print(f"  {len(verified.unchecked)} done point(s) have no digest yet and no records copy to check them "
              "against; the next `imbalance run` stores their digests")
    return 0




def explorer_study(target: str, outputs) -> str:
    """The study `imbalance explore TARGET` opens: a params file's study, or TARGET as a study name;
    either must have a database under `outputs`, else a ValueError naming the studies there."""
    path = Path(target)
    study = load_params(path).study if path.suffix in (".yaml", ".yml") and path.is_file() else target
    if path.suffix in (".yaml", ".yml") and not path.is_file():
        raise ValueError(f"{target}: no such params file")
    if not (Path(outputs) / study / "results.sqlite").is_file():
        there = sorted(p.parent.name for p in Path(outputs).glob("*/results.sqlite"))
        raise ValueError(f"study {study!r} has no results under {outputs}/ (no {outputs}/{study}/results.sqlite); "
                         + (f"studies there: {', '.join(there)}" if there else "run `imbalance run PARAMS` first"))
    return study


def explorer_notebook(study: str, outputs, notebooks, folder: Path, *, kernel: str) -> Path:
    """folder/explore.ipynb: notebooks/explore.ipynb with `study` and the absolute outputs folder injected
    after its parameters cell (as papermill injects them), its outputs cleared, on `kernel`."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    source = Path(notebooks) / "explore.ipynb"
    if not source.is_file():
        raise ValueError(f"--notebooks {notebooks}: no explore.ipynb there")
    if kernel not in KernelSpecManager().find_kernel_specs():
        raise ValueError(f"--kernel {kernel}: no such Jupyter kernel (`make venv` registers the venv's own, imbalance)")
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {**nb.metadata.get("kernelspec", {}), "name": kernel}
    at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", ())), None)
    if at is None:
        raise ValueError(f"{source}: no cell tagged 'parameters'")
    injected = nbformat.v4.new_code_cell(f"study = {study!r}\noutputs_dir = {str(Path(outputs).resolve())!r}",
                                         metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(at + 1, injected)
    path = folder / "explore.ipynb"
    nbformat.write(nb, path)
    return path


def voila_command(notebook: Path, *, port: int, open_browser: bool) -> list[str]:
    """Voila serving `notebook` on 127.0.0.1:port only (no retry on another port), sources stripped."""
    return [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0", "--strip_sources=True", f"--Voila.open_browser={open_browser}"]


def _stop(signum, frame):
    raise KeyboardInterrupt


def _explore(args) -> int:
    import signal
    import subprocess
    import tempfile
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    study = explorer_study(args.target, args.outputs)
    with tempfile.TemporaryDirectory(prefix="imbalance-explore-") as folder:
        notebook = explorer_notebook(study, args.outputs, args.notebooks, Path(folder), kernel=args.kernel)
        print(f"the explorer of {study}: http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
        signal.signal(signal.SIGTERM, _stop)        # terminated like Ctrl-C: Voila (and its kernels) stop too
        process = subprocess.Popen(voila_command(notebook, port=args.port, open_browser=not args.no_browser),
                                   cwd=folder)
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return 130


if __name__ == "__main__":
    sys.exit(main())
