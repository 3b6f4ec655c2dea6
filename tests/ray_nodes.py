"""A real Ray cluster on 127.0.0.1 for tests: `ray start --head` plus `ray start --address` per worker
node (a raylet each), each with its own CPU, stopped by killing exactly the processes it started (found
by the cluster's private temp dir in their command lines)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
NODE_ARGS = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--memory=2000000000",
             "--object-store-memory=200000000", "--disable-usage-stats"]


def without_loopback(env: dict[str, str]) -> dict[str, str]:
    """`env` without the loopback-only setting of local clusters (tests/conftest.py): `ray start` of a
    second node refuses to run with it, and a driver joining the cluster must use the machine's address."""
    return {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """A head and `worker_nodes` worker nodes on loopback; `address` for `--address`, `dashboard` for the
    Jobs API, `stop()` ends only its processes. `env`: extra environment of every node (and so of the
    jobs and workers they start); `self.env` is what a driver or `ray` command needs to reach the cluster."""

    def __init__(self, worker_nodes: int = 1, head_cpus: int = 1, env: dict[str, str] | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="vlpet-ray-")
        self.port, self.worker_nodes, self.head_cpus = free_port(), worker_nodes, head_cpus
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{free_port()}"
        # a head alone stays on loopback; a worker node refuses the loopback setting (see above).
        # Detect a dead node within seconds instead of Ray's default tens of seconds.
        base = without_loopback(os.environ) if worker_nodes else dict(os.environ)
        # token authentication with a token of its own: `ray start --head` creates none, and a machine's
        # ~/.ray/auth_token (there only once some Ray made it) would tie the test to what ran before
        self.env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_health_check_period_ms": "2000",
                    "RAY_health_check_failure_threshold": "5", "RAY_health_check_initial_delay_ms": "2000",
                    **(env or {})}

    def start(self) -> LocalRayCluster:
        head_args = [arg if arg != "--num-cpus=1" else f"--num-cpus={self.head_cpus}" for arg in NODE_ARGS]
        # each node's agent on a port of its own: Ray's fixed default (52365) may be taken by another Ray
        # on the machine, and a head without its agent takes no job submissions
        self._ray_start("--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}", "--include-dashboard=true",
                        "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard.rpartition(':')[2]}",
                        f"--dashboard-agent-listen-port={free_port()}", *head_args)
        for _ in range(self.worker_nodes):
            self._ray_start(f"--address={self.address}", f"--dashboard-agent-listen-port={free_port()}", *NODE_ARGS)
        return self

    def _ray_start(self, *args: str) -> None:
        """`ray start` one node; a failure shows what Ray said (its last lines), and stops what did start."""
        done = subprocess.run([RAY, "start", *args], env=self.env, capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode:
            self.stop()
            raise RuntimeError(f"ray start {args[0]} failed ({done.returncode}):\n"
                               f"{(done.stdout + done.stderr)[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster (its temp dir appears in their command lines)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if self.temp_dir in " ".join(proc.info["cmdline"] or []):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def worker_raylet(self) -> psutil.Process:
        """The second node's raylet (its socket is named raylet.1)."""
        return next(p for p in self.processes() if "raylet.1" in " ".join(p.cmdline()))

    def worker_node_id(self) -> str:
        """The second node's Ray node id (hex), as trials record it in `node_id`: its raylet's --node_id."""
        flag = next(arg for arg in self.worker_raylet().cmdline() if arg.startswith("--node_id="))
        return flag.partition("=")[2]

    def stop(self) -> None:
        """Terminate, then kill, every process of the cluster; again while any is left (a raylet being
        stopped can still be starting a worker)."""
        for _ in range(3):
            procs = self.processes()
            if not procs:
                return
            for proc in procs:
                proc.terminate()
            _, alive = psutil.wait_procs(procs, timeout=5)
            for proc in alive:
                proc.kill()
            psutil.wait_procs(alive, timeout=5)
