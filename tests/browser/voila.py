"""`imbalance explore` as a throwaway server for browser tests: localhost, a free port, stopped after."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from browser.jupyterlab import free_port

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
    log = open(home / "explore.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "imbalance.cli", "explore", target, "--outputs", str(outputs),
         "--notebooks", str(ROOT / "notebooks"), "--port", str(port), "--no-browser"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"imbalance explore exited with {process.returncode}: "
                                   f"{(home / 'explore.log').read_text()[-3000:]}")
            try:                                        # listening: Voila's page itself would start a kernel
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"imbalance explore did not answer on {base} within {timeout} s")
            time.sleep(0.3)
        yield base
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)      # the CLI, Voila and the kernels: one process group
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
