"""Every command of the README's shell blocks runs as shown, in a copy of the repository (issue 26).

The copy holds the tracked files as this working tree has them (a fresh clone, with this branch's edits),
`.venv` links to the environment running the tests and `PYTHONPATH` points at the copy's `lib` (what
`make venv`'s editable install does), and IMBALANCE_DATA is unset (a newcomer's machine has no real data).
A command that would train (`imbalance run` without `--dry-run`) runs as its dry run; `make` is left out
(it builds the venv). A command on a study that the README's own run command would have trained, run here
as a dry run only, must stop with the one-line error that names the params file to run."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PREFIX = ".venv/bin/"
PROGRAMS = ("imbalance", "python", "jupyter")


def shell_blocks(text: str) -> list[list[str]]:
    """The README's ```bash blocks, as commands: continuation lines joined, comments dropped."""
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        out.append([shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)])
    return out


def commands() -> list[list[str]]:
    return [c for block in shell_blocks((ROOT / "README.md").read_text()) for c in block]


def test_the_readme_writes_every_command_one_way():
    """One convention (README, "Commands in this README"): `make`, or a program of the venv's `.venv/bin/`."""
    found = commands()
    assert len(found) >= 15
    odd = [c for c in found if c[0] != "make" and not (c[0].startswith(PREFIX) and c[0][len(PREFIX):] in PROGRAMS)]
    assert odd == []


def test_shell_blocks_split_commands_as_a_shell_would():
    text = "```bash\n.venv/bin/imbalance run a.yaml --set 'rho=[10,100]' \\\n    --dry-run   # a note\nmake test\n```"
    assert shell_blocks(text) == [[[".venv/bin/imbalance", "run", "a.yaml", "--set", "rho=[10,100]", "--dry-run"],
                                   ["make", "test"]]]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The tracked files as this working tree has them, with `.venv` linked to this environment."""
    root = tmp_path_factory.mktemp("clone")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if k not in ("IMBALANCE_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(root / "lib"), MPLBACKEND="Agg")
    return root, env


def _plugin_module(text: str) -> str:
    """The README's plugin example (the python block headed `# my_methods.py`)."""
    return next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("# my_methods.py"))


def _study(args: list[str], cwd: Path) -> str:
    """The study `imbalance VERB PARAMS [--set study=NAME] ...` works on: the last `--set study=`, else the file's."""
    sets = [b for a, b in zip(args, args[1:]) if a == "--set"]
    named = [v.split("=", 1)[1] for v in sets if v.startswith("study=")]
    return named[-1] if named else yaml.safe_load((cwd / args[1]).read_text())["study"]


@pytest.mark.slow
def test_every_readme_command_runs_as_shown_in_a_fresh_copy(clone):
    root, env = clone
    text = (ROOT / "README.md").read_text()
    (root / "my_methods.py").write_text(_plugin_module(text))
    dry_only: set[str] = set()          # studies the README trains, run here as dry runs only
    ran = []
    for argv in commands():
        if argv[0] == "make":
            continue
        argv = [str(root / argv[0])] + argv[1:]
        program, verb = Path(argv[0]).name, argv[1] if len(argv) > 1 else ""
        if program == "imbalance" and verb == "run" and "--dry-run" not in argv:
            dry_only.add(_study(argv[1:], root))
            argv = argv + ["--dry-run"]
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        shown = " ".join(argv[1:])
        ran.append(shown)
        if done.returncode == 0:
            continue
        study = _study(argv[1:], root) if program == "imbalance" else None
        params = argv[2] if program == "imbalance" else None
        assert study in dry_only, (shown, done.returncode, done.stderr[-2000:])
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (shown, done.stderr)
        assert f"study {study!r} has not run yet (imbalance run {params})" in done.stderr, (shown, done.stderr)
    assert len(ran) >= 15
