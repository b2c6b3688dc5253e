"""`imbalance explore` as a throwaway server for browser tests: localhost, a free port, stopped after."""
from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from browser.jupyterlab import free_port, served

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def explore_server(target: str, *, outputs: Path, home: Path, timeout: float = 60):
    """Run `imbalance explore TARGET --outputs OUTPUTS` (Voila, no JupyterLab); yield its base URL; stop it
    (and its kernels: its own process group) after.  home: scratch config/runtime folders for Jupyter."""
    port = free_port()
    for sub in ("config", "runtime"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    lib = str(ROOT / "lib")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [lib, os.environ.get("PYTHONPATH")])),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    command = [sys.executable, "-m", "imbalance.cli", "explore", target, "--outputs", str(outputs),
               "--notebooks", str(ROOT / "notebooks"), "--port", str(port), "--no-browser"]
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:                                # listening: Voila's page itself would start a kernel
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    with served(command, name="imbalance explore", log=home / "explore.log", env=env, ready=ready, base=base,
                timeout=timeout, cwd=ROOT):
        yield base
