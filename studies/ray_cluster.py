"""Connect to Ray: a local cluster by default, an existing one with `--address`, failing fast and clearly."""

from __future__ import annotations

import os
import socket
from typing import Any

import ray

from vlpet.errors import ConfigError


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """A `host:port` address must accept TCP connections before Ray is asked to join it (Ray itself
    would retry for minutes). "auto" and ray:// client addresses are left to Ray."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} must be host:port (e.g. 127.0.0.1:6379), 'auto' or ray://host:10001")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(f"--address {address}: no Ray head reachable ({err.strerror or err}); start one with "
                          f"`ray start --head --port={port}` or omit --address for a local cluster") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(address: str | None = None, num_cpus: int | None = None, **init_kwargs: Any) -> None:
    """Join the cluster at `address`, or start a local one on loopback (`num_cpus` logical CPUs).

    Every worker gets RAY_ADDRESS of its own cluster: Ray Train's placement-group cleaner (which frees
    the workers of trials that ASHA stops) queries the state API, and without an address it gives up
    whenever a second Ray instance runs on the machine.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if address:
        check_address(address)
        env = {"RAY_ADDRESS": address} if "://" not in address and address != "auto" else {}
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, **init_kwargs)
        except (ConnectionError, RuntimeError) as err:
            raise ConfigError(f"--address {address}: cannot join the Ray cluster ({err})") from None
        return
    port = _free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)  # read by the local head when it starts
    try:
        # The dashboard's state API must run (see above); it and the cluster listen on loopback only.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"RAY_ADDRESS": f"127.0.0.1:{port}"}},
                 **init_kwargs)
    finally:
        del os.environ["RAY_GCS_SERVER_PORT"]
