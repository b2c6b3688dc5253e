"""A throwaway JupyterLab server for browser tests: localhost, a free port, a random token."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyterlab(root_dir: Path, *, home: Path, env: dict[str, str] | None = None, timeout: float = 60):
    """Run `jupyter lab` on root_dir; yields its base URL and token; stops it (and its kernels) after.

    home: a scratch folder for the server's config, runtime files and workspaces, so the test
    reads and leaves nothing in the user's Jupyter folders.
    """
    port, token = free_port(), secrets.token_hex(16)
    for sub in ("config", "data", "runtime", "workspaces", "settings"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(env or {}), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root_dir}", "--allow-root", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
            return reply.status == 200
    with served(command, name="jupyter lab", log=home / "jupyterlab.log", env=env, ready=ready, base=base,
                timeout=timeout):
        yield base, token


@contextmanager
def served(command: list[str], *, name: str, log: Path, env: dict, ready, base: str, timeout: float,
           cwd: Path | None = None):
    """Start `command` in a process group of its own, wait until ready() (an OSError means not yet), and stop
    the group (the server and its kernels) after; its output goes to `log`, quoted if it exits early."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}: {log.read_text()[-3000:]}")
                try:
                    if ready():
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not answer on {base} within {timeout} s")
                time.sleep(0.3)
            yield
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
