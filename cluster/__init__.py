"""Cluster launch configs (Ray cluster launcher YAMLs, KubeRay manifests) and their offline validator."""
