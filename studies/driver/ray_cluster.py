"""Connect to Ray: a local cluster by default, an existing one with `--address`, failing fast and clearly.

A local cluster listens on loopback only: Ray binds its servers (GCS, raylet, workers, agents) to
127.0.0.1 only when that is the node's address, and on Linux it replaces a 127.0.0.1 node address by the
machine's own unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is 0 (the setting that keeps Windows and macOS
on loopback). Ray reads it once, when first imported: `loopback_local_cluster()` must come first.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from vlpet.errors import ConfigError, holds_password

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def storage_uri(text: str) -> str:
    """A storage location for Tune and Train (an argparse type): a URI (s3://, gs://) as given, a local
    path made absolute (pyarrow's filesystem takes no relative one). Refused: an empty one (it would be the
    current directory), credentials in the URI (they would be printed and stored with the study), and a
    local path holding '?' or '#' (pyarrow reads those as a URI's query or fragment: the study would land
    in a directory nobody named)."""
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give s3://BUCKET/PATH, gs://BUCKET/PATH or a shared directory")
    scheme, sep, rest = text.partition("://")
    if sep and ("@" in rest.split("/", 1)[0] or holds_password(text)):  # user-info or ?secret_key=
        raise argparse.ArgumentTypeError(f"{scheme}://... holds credentials; give the bucket alone and the keys in "
                                         "the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or "
                                         "GOOGLE_APPLICATION_CREDENTIALS)")
    if not sep and any(c in text for c in "?#"):
        raise argparse.ArgumentTypeError(f"{text!r}: a local path with '?' or '#' is read as a URI's query or "
                                         "fragment; choose a directory name without them")
    return text if sep else str(Path(text).expanduser().resolve())


def loopback_local_cluster() -> None:
    """Make the local cluster that `connect()` will start listen on 127.0.0.1 only. Call it before
    anything imports ray, and never for a driver joining a cluster (its node address must be the
    machine's)."""
    os.environ.setdefault(LOOPBACK_ENV, "0")


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
    if not address:
        loopback_local_cluster()  # in effect when this is the first import of ray
    import ray

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
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host=LOOPBACK,
                 _node_ip_address=LOOPBACK, runtime_env={"env_vars": {"RAY_ADDRESS": f"{LOOPBACK}:{port}"}},
                 **init_kwargs)
    finally:
        del os.environ["RAY_GCS_SERVER_PORT"]
    node = ray.util.get_node_ip_address()
    if node != LOOPBACK:
        print(f"warning: the local Ray cluster listens on {node}, not only on loopback: ray was imported before "
              f"studies.driver.ray_cluster.loopback_local_cluster() (or {LOOPBACK_ENV} is set)", file=sys.stderr)
