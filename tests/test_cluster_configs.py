"""The shipped cluster configs validate offline, and broken copies are rejected with the offending path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.validate import (
    RAY_VERSION,
    ClusterConfigError,
    main,
    validate_cluster_yaml,
    validate_file,
    validate_kuberay_manifest,
)

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
LAUNCHER_YAMLS = ["aws-a100.yaml", "aws-h100.yaml", "gcp-a100.yaml", "gcp-h100.yaml"]
KUBERAY_YAMLS = ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"]


def test_shipped_file_set_is_complete() -> None:
    shipped = {p.relative_to(CLUSTER).as_posix() for p in [*CLUSTER.glob("*.yaml"), *CLUSTER.glob("kuberay/*.yaml")]}
    assert shipped == set(LAUNCHER_YAMLS + KUBERAY_YAMLS)


@pytest.mark.parametrize("name", LAUNCHER_YAMLS)
def test_launcher_yaml_validates(name: str) -> None:
    config = validate_cluster_yaml(CLUSTER / name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no trial on the head
    assert config["docker"]["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
    assert config["cluster_synced_files"] == []  # filled in from Ray's bundled defaults
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] == 8 and gpu["min_workers"] <= gpu["max_workers"] <= config["max_workers"]


@pytest.mark.parametrize("name", KUBERAY_YAMLS)
def test_kuberay_manifest_validates(name: str) -> None:
    docs = validate_kuberay_manifest(CLUSTER / name)
    assert any(doc["kind"] in ("RayCluster", "RayJob") for doc in docs)


def _write(tmp_path: Path, name: str, docs: list[Any]) -> Path:
    path = tmp_path / Path(name).name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _mutated(tmp_path: Path, name: str, mutate: Callable[[Any], Any]) -> Path:
    """A copy of cluster/<name> with mutate applied to its single document (launcher) or document list."""
    docs = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]
    target = copy.deepcopy(docs[0] if len(docs) == 1 and "apiVersion" not in docs[0] else docs)
    mutate(target)
    return _write(tmp_path, name, [target] if isinstance(target, dict) else target)


def _expect(path: Path, validate: Callable[[Path], Any], json_path: str, fragment: str) -> None:
    with pytest.raises(ClusterConfigError) as info:
        validate(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}") and f": {json_path}: " in message, message
    assert fragment in message, message


def _gpu(config: dict[str, Any]) -> dict[str, Any]:
    return config["available_node_types"]["gpu_worker"]


def _open_rule(port: int, cidr: str = "0.0.0.0/0") -> dict[str, Any]:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}


LAUNCHER_BREAKAGES = {
    "key typo": (
        lambda c: _gpu(c).update(min_worker=1),
        "available_node_types.gpu_worker",
        "additional property 'min_worker' not allowed (did you mean 'min_workers'?)",
    ),
    "top-level typo": (
        lambda c: c.update(idle_timeout_minute=5),
        "<root>",
        "additional property 'idle_timeout_minute' not allowed (did you mean 'idle_timeout_minutes'?)",
    ),
    "schema type": (lambda c: c.update(max_workers="two"), "max_workers", "'two' is not of type 'integer'"),
    "GPU worker without GPUs": (
        lambda c: _gpu(c).update(resources={"CPU": 96}),
        "available_node_types.gpu_worker.resources",
        "GPU worker type declares no GPU resources; add resources: {GPU: 8}",
    ),
    "min above max": (
        lambda c: _gpu(c).update(min_workers=3, max_workers=1),
        "available_node_types.gpu_worker",
        "min_workers (3) > max_workers (1)",
    ),
    "sum of min above global max": (
        lambda c: _gpu(c).update(min_workers=2, max_workers=4) or c.update(max_workers=1),
        "max_workers",
        "1 is below the sum of min_workers (2)",
    ),
    "dashboard open to the internet": (
        lambda c: c["provider"]["security_group"]["IpPermissions"].append(_open_rule(8265)),
        "provider.security_group.IpPermissions[1].IpRanges[0]",
        "ingress from 0.0.0.0/0 opens port 8265 (Ray dashboard / job API)",
    ),
    "SSH open to the internet": (
        lambda c: c["provider"]["security_group"]["IpPermissions"][0]["IpRanges"].append({"CidrIp": "0.0.0.0/0"}),
        "provider.security_group.IpPermissions[0].IpRanges[1]",
        "opens port 22 (SSH)",
    ),
    "dashboard open to half the internet": (
        lambda c: c["provider"]["security_group"]["IpPermissions"].append(_open_rule(8265, "0.0.0.0/1")),
        "provider.security_group.IpPermissions[1].IpRanges[0]",
        "ingress from 0.0.0.0/1 opens port 8265 (Ray dashboard / job API)",
    ),
    "GCS open to one public address": (
        lambda c: c["provider"]["security_group"]["IpPermissions"].append(_open_rule(6379, "198.51.99.7/32")),
        "provider.security_group.IpPermissions[1].IpRanges[0]",
        "ingress from 198.51.99.7/32 opens port 6379 (Ray GCS)",
    ),
    "SSH open to a public /8": (
        lambda c: c["provider"]["security_group"]["IpPermissions"][0]["IpRanges"].append({"CidrIp": "11.0.0.0/8"}),
        "provider.security_group.IpPermissions[0].IpRanges[1]",
        "ingress from 11.0.0.0/8 opens port 22 (SSH)",
    ),
    "head dashboard on every interface": (
        lambda c: c.update(head_start_ray_commands=[cmd.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
                                                    for cmd in c["head_start_ray_commands"]]),
        "head_start_ray_commands[1]",
        "binds the dashboard and job API (unauthenticated; they run code) to 0.0.0.0 (not loopback",
    ),
    "head dashboard on every interface of a dual-stack host": (
        lambda c: c.update(head_start_ray_commands=[cmd.replace("--dashboard-host=127.0.0.1", "--dashboard-host=::")
                                                    for cmd in c["head_start_ray_commands"]]),
        "head_start_ray_commands[1]",
        "binds the dashboard and job API (unauthenticated; they run code) to :: (not loopback",
    ),
    "all ports open over IPv6": (
        lambda c: c["provider"]["security_group"]["IpPermissions"].append(
            {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
        ),
        "provider.security_group.IpPermissions[1].Ipv6Ranges[0]",
        "ingress from ::/0 opens all ports",
    ),
    "port range covering GCS and client": (
        lambda c: c["provider"]["security_group"]["IpPermissions"].append(
            {"IpProtocol": "tcp", "FromPort": 6000, "ToPort": 11000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ),
        "provider.security_group.IpPermissions[1].IpRanges[0]",
        "opens ports 6379 (Ray GCS), 8265 (Ray dashboard / job API), 10001 (Ray client)",
    ),
    "no security group": (
        lambda c: c["provider"].pop("security_group"),
        "provider",
        "no security_group: Ray would create one with SSH open to 0.0.0.0/0",
    ),
    "deprecated ray-ml image": (
        lambda c: c["docker"].update(image="rayproject/ray-ml:2.9.3-py310-gpu"),
        "docker.image",
        "rayproject/ray-ml images are deprecated",
    ),
    "image on another Ray": (
        lambda c: c["docker"].update(worker_image="rayproject/ray:2.9.3-py311-gpu"),
        "docker.worker_image",
        f"tag must start with the installed Ray version {RAY_VERSION}",
    ),
    "head type not defined": (
        lambda c: c.update(head_node_type="ray_head"),
        "head_node_type",
        "'ray_head' is not one of available_node_types (head, gpu_worker)",
    ),
}


@pytest.mark.parametrize("breakage", LAUNCHER_BREAKAGES, ids=str)
def test_broken_launcher_yaml_is_rejected(tmp_path: Path, breakage: str) -> None:
    mutate, json_path, fragment = LAUNCHER_BREAKAGES[breakage]
    _expect(_mutated(tmp_path, "aws-a100.yaml", mutate), validate_cluster_yaml, json_path, fragment)


def test_gcp_gpu_type_inferred_from_machine_type(tmp_path: Path) -> None:
    def mutate(config: dict[str, Any]) -> None:
        config["available_node_types"]["trainer"] = config["available_node_types"].pop("gpu_worker")
        config["available_node_types"]["trainer"]["resources"] = {"CPU": 208}

    path = _mutated(tmp_path, "gcp-h100.yaml", mutate)
    _expect(path, validate_cluster_yaml, "available_node_types.trainer.resources", "add resources: {GPU: 8}")


def test_gcp_node_off_the_firewalled_network_is_rejected(tmp_path: Path) -> None:
    path = _mutated(tmp_path, "gcp-a100.yaml", lambda c: _gpu(c)["node_config"].pop("networkInterfaces"))
    _expect(path, validate_cluster_yaml, "available_node_types.gpu_worker.node_config", "no networkInterfaces")


def _cluster(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "RayCluster")["spec"]


def _gpu_container(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]


def _drop_gpu(docs: list[dict[str, Any]]) -> None:
    for section in _gpu_container(_cluster(docs))["resources"].values():
        section.pop("nvidia.com/gpu")


GPU_LIMITS = "spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits"
KUBERAY_BREAKAGES = {
    "missing GPU limit": (_drop_gpu, GPU_LIMITS, "GPU worker group declares no nvidia.com/gpu limit"),
    "LoadBalancer head service": (
        lambda docs: _cluster(docs)["headGroupSpec"].update(serviceType="LoadBalancer"),
        "spec.headGroupSpec.serviceType",
        "LoadBalancer exposes the dashboard/GCS outside the cluster",
    ),
    "wrong apiVersion": (
        lambda docs: next(d for d in docs if d["kind"] == "RayCluster").update(apiVersion="ray.io/v1alpha1"),
        "apiVersion",
        "expected 'ray.io/v1' (KubeRay >= 1.0), got 'ray.io/v1alpha1'",
    ),
    "minReplicas above maxReplicas": (
        lambda docs: _cluster(docs)["workerGroupSpecs"][0].update(minReplicas=3, replicas=3),
        "spec.workerGroupSpecs[0]",
        "minReplicas (3) > maxReplicas (2)",
    ),
    "deprecated ray-ml image": (
        lambda docs: _gpu_container(_cluster(docs)).update(image="rayproject/ray-ml:2.9.3-py310-gpu"),
        "spec.workerGroupSpecs[0].template.spec.containers[0].image",
        "rayproject/ray-ml images are deprecated",
    ),
    "no NetworkPolicy for a head on every pod interface": (
        lambda docs: docs.remove(next(d for d in docs if d["kind"] == "NetworkPolicy")),
        "spec.headGroupSpec.rayStartParams.dashboard-host",
        "'0.0.0.0' exposes the head's dashboard, job API and GCS to every pod; add a NetworkPolicy",
    ),
    "a NetworkPolicy that admits an IP block": (
        lambda docs: next(d for d in docs if d["kind"] == "NetworkPolicy")["spec"]["ingress"][0]["from"].append(
            {"ipBlock": {"cidr": "0.0.0.0/0"}}),
        "spec.headGroupSpec.rayStartParams.dashboard-host",
        "admits only the Ray pods",
    ),
    "NodePort service next to the cluster": (
        lambda docs: docs.append(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dash"}, "spec": {"type": "NodePort"}}
        ),
        "spec.type",
        "exposes Ray outside the cluster",
    ),
}


@pytest.mark.parametrize("breakage", KUBERAY_BREAKAGES, ids=str)
def test_broken_raycluster_is_rejected(tmp_path: Path, breakage: str) -> None:
    mutate, json_path, fragment = KUBERAY_BREAKAGES[breakage]
    _expect(_mutated(tmp_path, "kuberay/raycluster.yaml", mutate), validate_kuberay_manifest, json_path, fragment)


def test_rayjob_must_tear_down_and_needs_gpus(tmp_path: Path) -> None:
    keep = _mutated(tmp_path, "kuberay/rayjob.yaml", lambda d: d[0]["spec"].update(shutdownAfterJobFinishes=False))
    _expect(keep, validate_kuberay_manifest, "spec.shutdownAfterJobFinishes", "must be true")

    def drop_gpu(docs: list[dict[str, Any]]) -> None:
        for section in _gpu_container(docs[0]["spec"]["rayClusterSpec"])["resources"].values():
            section.pop("nvidia.com/gpu")

    no_gpu = _mutated(tmp_path, "kuberay/rayjob.yaml", drop_gpu)
    _expect(no_gpu, validate_kuberay_manifest, f"spec.rayClusterSpec.{GPU_LIMITS[5:]}", "no nvidia.com/gpu limit")


def test_validate_file_dispatches_on_content(tmp_path: Path) -> None:
    validate_file(CLUSTER / "aws-h100.yaml")
    validate_file(CLUSTER / "kuberay/rayjob.yaml")
    with pytest.raises(ClusterConfigError, match=r"missing.yaml: cannot read it \(No such file or directory\)"):
        validate_file(tmp_path / "missing.yaml")


def test_cli_reports_each_file_and_fails_on_any_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _mutated(tmp_path, "aws-a100.yaml", lambda c: _gpu(c).update(min_worker=1))
    assert main([str(CLUSTER / "gcp-a100.yaml"), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == f"OK   {CLUSTER / 'gcp-a100.yaml'}"
    assert err.startswith(f"FAIL {bad}: available_node_types.gpu_worker: additional property 'min_worker'")
    assert main([str(CLUSTER / name) for name in LAUNCHER_YAMLS + KUBERAY_YAMLS]) == 0


def test_private_ranges_and_a_narrow_admin_range_are_accepted(tmp_path: Path) -> None:
    """Ray ports from the cluster's private network and SSH from an admin's public /24 pass."""
    def open_privately(config: dict[str, Any]) -> None:
        rules = config["provider"]["security_group"]["IpPermissions"]
        rules.append(_open_rule(6379, "10.0.0.0/8"))
        rules[0]["IpRanges"].append({"CidrIp": "198.51.99.0/24"})

    validate_cluster_yaml(_mutated(tmp_path, "aws-a100.yaml", open_privately))
