"""The package's imports run one way, by stage (docs/DESIGN.md, "The house by stage"), and none is circular:
vocabulary <- data <- training <- study <- analysis <- cli. Every import counts, top-level or inside a
function; `if TYPE_CHECKING:` ones too."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
PACKAGE = LIB / "imbalance"
VOCABULARY = ("imbalance", "imbalance.registry", "imbalance.schema", "imbalance.seeds", "imbalance.catalog",
              "imbalance.checks")
RANK = {"vocabulary": 0, "data": 1, "training": 2, "study": 3, "analysis": 4, "cli": 5}
# analysis may reach down past training for these torch-free modules only
ANALYSIS_MAY_USE = ("imbalance.data.profiles",)


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def stage(module: str) -> str:
    if module in VOCABULARY:
        return "vocabulary"
    if module == "imbalance.sampling":      # the public facade of data's resampling
        return "data"
    if module == "imbalance.cli":
        return "cli"
    return module.split(".")[1]


def imports_of(module: str) -> set[str]:
    """The package modules `module` imports anywhere in its text (resolved to modules where they are ones)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n == "imbalance" or n.startswith("imbalance."))
    found.discard(module)
    return {n if n in MODULES else n.rpartition(".")[0] for n in found}


GRAPH = {m: imports_of(m) for m in MODULES}


def allowed(source: str, target: str) -> bool:
    s, t = stage(source), stage(target)
    if s == "vocabulary":
        return target == "imbalance" and source != "imbalance"   # only the package's __version__
    if s == "analysis" and t in ("data", "training"):
        return target in ANALYSIS_MAY_USE
    return RANK[t] <= RANK[s]


def test_every_module_belongs_to_a_stage():
    assert {stage(m) for m in MODULES} <= set(RANK)
    assert {"imbalance.data.datasets", "imbalance.training.pipeline", "imbalance.study.store",
            "imbalance.analysis.report"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way_by_stage(module):
    wrong = sorted(t for t in GRAPH[module] if not allowed(module, t))
    assert not wrong, f"{module} ({stage(module)}) imports {wrong}, against the stage order"


def test_no_import_cycle():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_lazy_import_and_a_cycle(tmp_path):
    """The walker is not blind: a function-level import is found, and a two-module loop is a cycle."""
    source = "def f():\n    from imbalance.training import pipeline\n"
    tree = ast.parse(source)
    lazy = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert lazy and lazy[0].module == "imbalance.training"
    assert not allowed("imbalance.analysis.report", "imbalance.training.pipeline")
    assert not allowed("imbalance.schema", "imbalance.registry")
    assert allowed("imbalance.analysis.report", "imbalance.data.profiles")


ANALYSIS_WITHOUT_TORCH = r"""
import shutil, sys
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src / "quick", out / "quick")
from imbalance.analysis import conclusions, explorer, frames, report
from imbalance.study.store import Store
report.write_report("quick", out)
Store(out / "quick" / "results.sqlite", create=False).export("quick", out / "quick.csv")
records, curves = frames.load_study("quick", out)
options = explorer.explorer_defaults(records)
explorer.explorer_figure(records, rho=options["rho"], mu=options["mu"], imbalance=options["imbalance"],
                         dataset=options["dataset"])
conclusions.check_all(records, curves=curves)
import imbalance.analysis.findings, imbalance.analysis.stats, imbalance.analysis.plots, imbalance.analysis.tables
print("torch" in sys.modules)
"""


@pytest.mark.slow
def test_analysis_builds_a_report_an_export_the_explorer_figure_and_the_conclusions_without_torch(tmp_path):
    outputs = Path(__file__).resolve().parents[1] / "outputs"
    done = subprocess.run([sys.executable, "-c", ANALYSIS_WITHOUT_TORCH, str(outputs), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "quick" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "quick.csv").stat().st_size > 1_000
    assert done.stdout.strip().splitlines()[-1] == "False", "torch was imported by the analysis"
