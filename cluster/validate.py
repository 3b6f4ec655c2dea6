"""Offline validation of the Ray cluster launcher YAMLs and KubeRay manifests under cluster/.

Launcher YAMLs go through what `ray up` does before it touches a cloud: `prepare_config` merges the
provider's defaults.yaml shipped inside the ray package (a file read: no boto3/googleapiclient
import, no credentials, no network), then the merged config is checked against
ray/autoscaler/ray-schema.json and by Ray's own `validate_config`. Validating the raw YAML instead
would miss what the defaults fill in (cluster_synced_files, per-type min/max_workers, ...).
Project checks the schema cannot express come on top: GPU worker types declare GPU resources,
min_workers <= max_workers, no deprecated `rayproject/ray-ml` image, the image's Ray version equals
the installed one, and no Ray port or SSH reachable from the whole internet.

KubeRay manifests get structural checks only (no CRD schema is available offline).

    vlpet-cluster-validate cluster/*.yaml cluster/kuberay/*.yaml     # = python -m cluster.validate
"""

from __future__ import annotations

import argparse
import copy
import difflib
import ipaddress
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

# Laptop, head and workers must run the same Ray as this venv (pinned in pyproject.toml).
RAY_VERSION: str = ray.__version__
SCHEMA_PATH = Path(ray.autoscaler.__file__).with_name("ray-schema.json")

# Never reachable from the internet: the Ray endpoints are unauthenticated and run arbitrary code;
# SSH is for the admin CIDR only.
SENSITIVE_PORTS: dict[int, str] = {
    22: "SSH",
    6379: "Ray GCS",
    8265: "Ray dashboard / job API",
    10001: "Ray client",
}
_EXPOSED_SERVICE_TYPES = ("LoadBalancer", "NodePort")

_AWS_GPU_INSTANCE = re.compile(r"^(p\d|g\d|gr\d)[a-z0-9-]*\.")  # p4d.24xlarge, p5.48xlarge, g5.xlarge
_GCP_GPU_MACHINE = re.compile(r"^(a\d|g\d)-")  # a2-highgpu-8g, a2-ultragpu-8g, a3-highgpu-8g, g2-standard-8
_GPUS_PER_AWS_INSTANCE = {"p4d.24xlarge": 8, "p4de.24xlarge": 8, "p5.48xlarge": 8, "p5e.48xlarge": 8}

Parts = tuple[str | int, ...]


class ClusterConfigError(ValueError):
    """An invalid cluster config; the one-line message reads `<file>: <json path>: <problem>`."""


def _json_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _error(where: str | Path, parts: Parts, message: str) -> ClusterConfigError:
    return ClusterConfigError(f"{where}: {_json_path(parts)}: {' '.join(message.split())}")


def _load_documents(path: str | Path) -> list[Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except OSError as exc:
        raise ClusterConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ClusterConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as "
                                 "UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ClusterConfigError(f"{path}: invalid YAML{where}: {problem}") from None


# --- Ray cluster launcher YAML --------------------------------------------------------------------


def validate_cluster_yaml(path: str | Path) -> dict[str, Any]:
    """Validate a Ray cluster launcher YAML offline; return the config with Ray's defaults filled in.

    Raises ClusterConfigError naming the file and the JSON path of the first problem found.
    """
    docs = _load_documents(path)
    if len(docs) != 1 or not isinstance(docs[0], Mapping):
        raise _error(path, (), "expected one YAML mapping (a Ray cluster launcher config)")
    raw = docs[0]
    provider = raw.get("provider")
    if not isinstance(provider, Mapping) or not isinstance(provider.get("type"), str):
        raise _error(path, ("provider",), "missing provider mapping with a 'type' (aws, gcp, ...)")

    config = _prepare(raw, path)
    _check_schema(config, path)
    _check_node_types(config, path)
    for parts, image in _launcher_images(config):
        _check_image(path, parts, image)
    _check_head_binding(config, path)
    if config["provider"]["type"] == "aws":
        _check_aws_security(config, path)
    elif config["provider"]["type"] == "gcp":
        _check_gcp_network(config, path)
    try:  # Ray's own cross-field checks, as the last word
        validate_config(config)
    except (ValueError, RuntimeError) as exc:
        raise _error(path, (), f"ray validate_config: {exc}") from None
    return config


def _prepare(raw: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    util_logger = logging.getLogger("ray.autoscaler._private.util")
    level = util_logger.level
    util_logger.setLevel(logging.WARNING)  # mute the per-node-type "setting max workers" INFO lines
    try:
        return prepare_config(copy.deepcopy(dict(raw)))
    except (AttributeError, AssertionError, KeyError, NotImplementedError, TypeError, ValueError) as exc:
        raise _error(path, (), f"ray prepare_config failed: {type(exc).__name__}: {exc}") from None
    finally:
        util_logger.setLevel(level)


def _check_schema(config: Mapping[str, Any], path: str | Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    parts = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = sorted(error.schema.get("properties", {}))
        patterns = error.schema.get("patternProperties", {})
        extra = next(k for k in error.instance if k not in allowed and not any(re.search(p, k) for p in patterns))
        close = difflib.get_close_matches(extra, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _error(path, parts, f"additional property {extra!r} not allowed{hint}")
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    raise _error(path, parts, message)


def _check_node_types(config: Mapping[str, Any], path: str | Path) -> None:
    node_types = config["available_node_types"]
    head = config["head_node_type"]
    if head not in node_types:
        known = ", ".join(node_types)
        raise _error(path, ("head_node_type",), f"{head!r} is not one of available_node_types ({known})")
    for name, node_type in node_types.items():
        base: Parts = ("available_node_types", name)
        low, high = node_type["min_workers"], node_type["max_workers"]
        if low > high:
            raise _error(path, base, f"min_workers ({low}) > max_workers ({high})")
        if (name != head and _looks_like_gpu(name, node_type["node_config"])
                and node_type["resources"].get("GPU", 0) <= 0):
            gpus = _gpus_per_node(node_type["node_config"])
            raise _error(path, (*base, "resources"),
                         f"GPU worker type declares no GPU resources; add resources: {{GPU: {gpus or 'N'}}}")
    total_min = sum(node_type["min_workers"] for node_type in node_types.values())
    if total_min > config["max_workers"]:
        raise _error(path, ("max_workers",), f"{config['max_workers']} is below the sum of min_workers ({total_min})")


def _looks_like_gpu(name: str, node_config: Mapping[str, Any]) -> bool:
    """GPU-ness from the type's name, AWS InstanceType, GCP machineType or attached guestAccelerators."""
    return bool(
        "gpu" in name.lower()
        or _AWS_GPU_INSTANCE.match(str(node_config.get("InstanceType", "")))
        or _GCP_GPU_MACHINE.match(str(node_config.get("machineType", "")))
        or node_config.get("guestAccelerators")
    )


def _gpus_per_node(node_config: Mapping[str, Any]) -> int | None:
    if (count := _GPUS_PER_AWS_INSTANCE.get(str(node_config.get("InstanceType")))) is not None:
        return count
    match = re.search(r"-(\d+)g$", str(node_config.get("machineType", "")))  # a2-highgpu-8g -> 8
    return int(match.group(1)) if match else None


def _launcher_images(config: Mapping[str, Any]) -> Iterator[tuple[Parts, str]]:
    docker = config.get("docker") or {}
    for key in ("image", "head_image", "worker_image"):
        if docker.get(key):
            yield ("docker", key), docker[key]
    for name, node_type in config["available_node_types"].items():
        if image := (node_type.get("docker") or {}).get("worker_image"):
            yield ("available_node_types", name, "docker", "worker_image"), image


def _check_image(where: str | Path, parts: Parts, image: str) -> None:
    name = image.partition("@")[0]
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon belonged to a registry host:port
        repo, tag = name, ""
    if re.search(r"(^|/)rayproject/ray-ml$", repo):
        raise _error(
            where,
            parts,
            f"{image!r}: rayproject/ray-ml images are deprecated and frozen at an old Ray; "
            f"use rayproject/ray:{RAY_VERSION}-py311-gpu and install torch with the project",
        )
    if re.search(r"(^|/)rayproject/ray$", repo) and not (tag == RAY_VERSION or tag.startswith(RAY_VERSION + "-")):
        raise _error(
            where,
            parts,
            f"{image!r}: tag must start with the installed Ray version {RAY_VERSION} (client and cluster must match)",
        )


def _check_aws_security(config: Mapping[str, Any], path: str | Path) -> None:
    group = config["provider"].get("security_group")
    node_configs = [node_type["node_config"] for node_type in config["available_node_types"].values()]
    if group is None and not all("SecurityGroupIds" in node_config for node_config in node_configs):
        raise _error(
            path,
            ("provider",),
            "no security_group: Ray would create one with SSH open to 0.0.0.0/0; define "
            "security_group (GroupName, IpPermissions with SSH from your admin CIDR) and pre-create it "
            "as in cluster/README.md",
        )
    for i, rule in enumerate((group or {}).get("IpPermissions", [])):
        base: Parts = ("provider", "security_group", "IpPermissions", i)
        exposed, ports = _rule_ports(rule)
        for ranges, key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for j, entry in enumerate(rule.get(ranges, [])):
                if ports and _too_open(entry.get(key), ssh_only=ports == {22}):
                    raise _error(
                        path,
                        (*base, ranges, j),
                        f"ingress from {entry[key]} opens {exposed}; keep Ray ports private (reach the "
                        "dashboard with `ray dashboard <cluster yaml>`) and allow SSH only from your admin CIDR",
                    )


def _rule_ports(rule: Mapping[str, Any]) -> tuple[str, set[int]]:
    """The sensitive ports an ingress rule covers: a description and the port numbers (none: '', {})."""
    protocol = str(rule.get("IpProtocol", "")).lower()
    if protocol in ("-1", "all"):
        return "all ports", set(SENSITIVE_PORTS)
    if protocol not in ("tcp", "6"):  # Ray and SSH are TCP only
        return "", set()
    low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
    if low == -1 and high == -1:
        return "all TCP ports", set(SENSITIVE_PORTS)
    covered = {port: what for port, what in SENSITIVE_PORTS.items() if low <= port <= high}
    if not covered:
        return "", set()
    text = ", ".join(f"{port} ({what})" for port, what in covered.items())
    return ("port " if len(covered) == 1 else "ports ") + text, set(covered)


# The widest public range SSH may be open to: an admin's network, not a share of the internet.
SSH_MIN_PREFIX = {4: 16, 6: 48}


def _too_open(cidr: object, ssh_only: bool) -> bool:
    """Whether an ingress range reaches beyond what may see the ports: Ray's ports only private ranges
    (a public range of any size, 0.0.0.0/1 as much as 0.0.0.0/0, is refused), SSH a public range no
    wider than SSH_MIN_PREFIX."""
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False
    if net.is_private:
        return False
    return not ssh_only or net.prefixlen < SSH_MIN_PREFIX[net.version]


_DASHBOARD_HOST = re.compile(r"--dashboard-host[= ]+['\"]?([^\s'\"]+)")


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_head_binding(config: Mapping[str, Any], path: str | Path) -> None:
    """The head's dashboard (and job API) stays on loopback: `ray dashboard <cluster yaml>` tunnels to it.
    Any other host is refused: 0.0.0.0 and :: (every interface of a dual-stack host) as much as one address."""
    for i, command in enumerate(config.get("head_start_ray_commands") or []):
        for host in _DASHBOARD_HOST.findall(str(command)):
            if not _is_loopback(host):
                raise _error(path, ("head_start_ray_commands", i),
                             f"binds the dashboard and job API (unauthenticated; they run code) to {host} (not "
                             "loopback; 0.0.0.0 and :: are every interface); use --dashboard-host=127.0.0.1 and "
                             "reach it with `ray dashboard <cluster yaml>`")


def _check_gcp_network(config: Mapping[str, Any], path: str | Path) -> None:
    # The GCP provider manages no firewall rules; it only picks a subnet when none is given.
    for name, node_type in config["available_node_types"].items():
        if "networkInterfaces" not in node_type["node_config"]:
            raise _error(
                path,
                ("available_node_types", name, "node_config"),
                "no networkInterfaces: Ray would attach the node to the project's first subnet (often the "
                "'default' network, whose default-allow-ssh rule is open to 0.0.0.0/0); set the firewalled "
                "subnetwork from cluster/README.md",
            )


# --- KubeRay manifests -----------------------------------------------------------------------------

_RAY_KINDS = ("RayCluster", "RayJob")


def validate_kuberay_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Structurally validate a KubeRay manifest (one or more YAML documents); return its documents.

    Checks: apiVersion ray.io/v1, kind RayCluster/RayJob, a head group, a worker group with an
    nvidia.com/gpu limit, minReplicas <= maxReplicas, no LoadBalancer/NodePort exposure, images on
    the installed Ray version, and RayJobs that tear their cluster down.
    """
    docs = _load_documents(path)
    if not all(isinstance(doc, Mapping) for doc in docs):
        raise _error(path, (), "every YAML document must be a Kubernetes object mapping")
    policies = [doc for doc in docs if doc.get("kind") == "NetworkPolicy"]
    ray_docs = 0
    for doc in docs:
        kind, api = doc.get("kind"), str(doc.get("apiVersion", ""))
        where = f"{path} ({kind}/{(doc.get('metadata') or {}).get('name', '?')})"
        if kind in _RAY_KINDS or api.startswith("ray.io/"):
            ray_docs += 1
            _check_ray_object(doc, where)
            _check_head_isolated(doc, policies, where)
        elif kind == "Service" and (doc.get("spec") or {}).get("type") in _EXPOSED_SERVICE_TYPES:
            raise _error(where, ("spec", "type"), "exposes Ray outside the cluster; use ClusterIP + port-forward")
    if not ray_docs:
        raise _error(path, (), f"no {' or '.join(_RAY_KINDS)} document")
    return docs


def _check_ray_object(doc: Mapping[str, Any], where: str) -> None:
    kind = doc.get("kind")
    if kind not in _RAY_KINDS:
        raise _error(where, ("kind",), f"expected one of {', '.join(_RAY_KINDS)}, got {kind!r}")
    if doc.get("apiVersion") != "ray.io/v1":
        raise _error(where, ("apiVersion",), f"expected 'ray.io/v1' (KubeRay >= 1.0), got {doc.get('apiVersion')!r}")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise _error(where, ("spec",), "missing spec")
    if kind == "RayCluster":
        _check_cluster_spec(spec, ("spec",), where)
        return
    if not spec.get("entrypoint"):
        raise _error(where, ("spec", "entrypoint"), "missing entrypoint")
    if spec.get("shutdownAfterJobFinishes") is not True:
        raise _error(where, ("spec", "shutdownAfterJobFinishes"), "must be true, or the GPU workers outlive the job")
    cluster_spec = spec.get("rayClusterSpec")
    if not isinstance(cluster_spec, Mapping):
        raise _error(where, ("spec", "rayClusterSpec"), "missing cluster spec")
    _check_cluster_spec(cluster_spec, ("spec", "rayClusterSpec"), where)


def _check_head_isolated(doc: Mapping[str, Any], policies: list[Mapping[str, Any]], where: str) -> None:
    """A head whose dashboard listens on every pod interface (KubeRay's default) needs a NetworkPolicy in
    the manifest that selects its pods and admits only selected pods (no ipBlock, no whole namespaces)."""
    base: Parts = ("spec", "headGroupSpec") if doc["kind"] == "RayCluster" else ("spec", "rayClusterSpec", "headGroupSpec")
    head = doc
    for key in base:
        head = head[key]
    host = str((head.get("rayStartParams") or {}).get("dashboard-host", "0.0.0.0"))
    if host in ("127.0.0.1", "localhost"):
        return
    labels = ((head.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for policy in policies:
        spec = policy.get("spec") or {}
        selector = (spec.get("podSelector") or {}).get("matchLabels") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
            continue
        peers = [peer for rule in spec.get("ingress") or [] for peer in (rule.get("from") or [None])]
        if all(isinstance(peer, Mapping) and "ipBlock" not in peer and (peer.get("podSelector") or {}).get("matchLabels")
               for peer in peers):
            return
    raise _error(where, (*base, "rayStartParams", "dashboard-host"),
                 f"{host!r} exposes the head's dashboard, job API and GCS to every pod; add a NetworkPolicy that "
                 "selects the head's pod labels (template.metadata.labels) and admits only the Ray pods, as "
                 "cluster/kuberay/raycluster.yaml does")


def _check_cluster_spec(spec: Mapping[str, Any], base: Parts, where: str) -> None:
    if "rayVersion" in spec and str(spec["rayVersion"]) != RAY_VERSION:
        raise _error(where, (*base, "rayVersion"), f"{spec['rayVersion']!r} != installed Ray {RAY_VERSION}")
    head = spec.get("headGroupSpec")
    if not isinstance(head, Mapping):
        raise _error(where, (*base, "headGroupSpec"), "missing head group")
    head_base: Parts = (*base, "headGroupSpec")
    if head.get("serviceType") in _EXPOSED_SERVICE_TYPES:
        raise _error(
            where,
            (*head_base, "serviceType"),
            f"{head['serviceType']} exposes the dashboard/GCS outside the cluster; use ClusterIP + port-forward",
        )
    service_type = ((head.get("headService") or {}).get("spec") or {}).get("type")
    if service_type in _EXPOSED_SERVICE_TYPES:
        raise _error(where, (*head_base, "headService", "spec", "type"), f"{service_type} exposes Ray; use ClusterIP")
    _containers(head, head_base, where)

    groups = spec.get("workerGroupSpecs")
    if not isinstance(groups, list) or not groups:
        raise _error(where, (*base, "workerGroupSpecs"), "no worker group; add a GPU worker group")
    has_gpu_group = False
    for i, group in enumerate(groups):
        group_base: Parts = (*base, "workerGroupSpecs", i)
        if not isinstance(group, Mapping):
            raise _error(where, group_base, "a worker group must be a mapping")
        for key in ("replicas", "minReplicas", "maxReplicas"):
            if key in group and not isinstance(group[key], int):
                raise _error(where, (*group_base, key), f"{group[key]!r} is not an integer")
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if low > high:
            raise _error(where, group_base, f"minReplicas ({low}) > maxReplicas ({high})")
        if "replicas" in group and not low <= group["replicas"] <= high:
            raise _error(where, (*group_base, "replicas"), f"{group['replicas']} is outside [{low}, {high}]")
        ray_container = _containers(group, group_base, where)[0]  # KubeRay runs Ray in the first container
        resources = ray_container.get("resources") or {}
        limits = resources.get("limits") or {}
        try:
            gpus = int(str(limits.get("nvidia.com/gpu", 0)))
        except ValueError:
            raise _error(
                where,
                (*group_base, "template", "spec", "containers", 0, "resources", "limits", "nvidia.com/gpu"),
                f"{limits['nvidia.com/gpu']!r} is not a whole number of GPUs",
            ) from None
        if gpus > 0:
            has_gpu_group = True
        elif "gpu" in str(group.get("groupName", "")).lower() or "nvidia.com/gpu" in (resources.get("requests") or {}):
            raise _error(
                where,
                (*group_base, "template", "spec", "containers", 0, "resources", "limits"),
                "GPU worker group declares no nvidia.com/gpu limit; add nvidia.com/gpu: 8",
            )
    if not has_gpu_group:
        message = "no worker group has an nvidia.com/gpu limit; add nvidia.com/gpu: 8"
        raise _error(where, (*base, "workerGroupSpecs"), message)


def _containers(group: Mapping[str, Any], base: Parts, where: str) -> list[Mapping[str, Any]]:
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise _error(where, (*base, "template", "spec", "containers"), "missing Ray container")
    for i, container in enumerate(containers):
        _check_image(where, (*base, "template", "spec", "containers", i, "image"), str(container.get("image", "")))
    return containers


# --- CLI -------------------------------------------------------------------------------------------


def validate_file(path: str | Path) -> None:
    """Validate one file: Kubernetes objects (apiVersion + kind) as KubeRay, anything else as a launcher YAML."""
    docs = _load_documents(path)
    if docs and isinstance(docs[0], Mapping) and "apiVersion" in docs[0] and "kind" in docs[0]:
        validate_kuberay_manifest(path)
    else:
        validate_cluster_yaml(path)


def main(argv: list[str] | None = None) -> int:
    """Validate each file, print OK or the error per file; exit status 1 when any file is invalid."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="launcher YAMLs and/or KubeRay manifests")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        try:
            validate_file(path)
        except ClusterConfigError as exc:
            failed += 1
            print(f"FAIL {exc}", file=sys.stderr)
        else:
            print(f"OK   {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
