"""Connect to Ray: a local cluster by default, an existing one with `--address`, failing fast and clearly."""

from __future__ import annotations

import os
import socket

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


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address`, or start a local one (`num_cpus` logical CPUs, default all)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if address:
        check_address(address)
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError) as err:
            raise ConfigError(f"--address {address}: cannot join the Ray cluster ({err})") from None
    else:
        # The dashboard's state API must run: Ray Train's placement-group cleaner relies on it to free
        # the workers of trials that ASHA stops. It listens on loopback only.
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
                 _node_ip_address="127.0.0.1")  # a local cluster listens on loopback only
