"""deploy/k8s: each overlay builds with kustomize and validates with kubeconform, offline.

kubeconform reads only the schemas kept in deploy/k8s/schemas (Kubernetes v1.34 and the
Prometheus Operator and Strimzi CRDs; closeloop_devtools.k8s_schemas), with `-strict`: an unknown
field, a wrong type or a kind without a schema fails the test, and so would a skipped resource.
The tests after that check what the issue asks of the manifests themselves.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from closeloop_common.services import SERVICES
from tests.deploy.tools import ROOT, run, tool

pytestmark = pytest.mark.deploy

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SCHEMA_LOCATION = str(K8S / "schemas" / "{{ .ResourceKind }}{{ .KindSuffix }}.json")
CONSUMERS = {"scoring", "loop-orchestrator", "notifier"}
PARTITIONS = 6

Resource = dict[str, Any]


@functools.cache
def build(path: Path) -> str:
    result = run(tool("kustomize"), "build", str(path))
    assert result.returncode == 0, result.stderr
    return result.stdout


def resources(overlay: str) -> list[Resource]:
    return [r for r in yaml.safe_load_all(build(K8S / "overlays" / overlay)) if r]


def of_kind(overlay: str, kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources(overlay) if r["kind"] == kind}


def kubeconform(manifests: str) -> dict[str, Any]:
    result = run(
        tool("kubeconform"),
        "-strict",
        "-summary",
        "-verbose",
        "-output",
        "json",
        "-schema-location",
        SCHEMA_LOCATION,
        "-",
        stdin=manifests,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    report["returncode"] = result.returncode
    return report


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_against_the_kubernetes_and_crd_schemas(overlay: str) -> None:
    manifests = build(K8S / "overlays" / overlay)
    report = kubeconform(manifests)
    problems = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert problems == []
    assert report["summary"] == {
        "valid": len(resources(overlay)),
        "invalid": 0,
        "errors": 0,
        "skipped": 0,
    }
    assert report["returncode"] == 0


def test_the_topics_job_component_is_valid_too(tmp_path: Path) -> None:
    # For a Kafka that Strimzi does not run: the base with the topics Job instead.
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(K8S / "base", tmp_path)],
                "components": [os.path.relpath(K8S / "components" / "topics-job", tmp_path)],
            }
        )
    )
    manifests = build(tmp_path)
    kinds = [r["kind"] for r in yaml.safe_load_all(manifests)]
    assert "KafkaTopic" not in kinds
    assert kinds.count("Job") == len(SERVICES) + 1
    report = kubeconform(manifests)
    assert report["summary"]["valid"] == len(kinds)
    assert report["returncode"] == 0


def test_kubeconform_refuses_an_unknown_field_a_wrong_type_and_an_unknown_kind() -> None:
    # The validation above can fail: these three mistakes are each reported.
    manifests = build(K8S / "overlays" / "prod")
    misspelt = manifests.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", 1)
    assert "readOnlyRootFileSystem" in misspelt
    report = kubeconform(misspelt)
    assert report["summary"]["invalid"] == 1
    assert "additional properties 'readOnlyRootFileSystem' not allowed" in json.dumps(report)
    wrong_type = manifests.replace("partitions: 6", "partitions: six", 1)
    assert kubeconform(wrong_type)["summary"]["invalid"] == 1
    unknown_kind = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    report = kubeconform(unknown_kind)
    assert report["summary"]["errors"] == 1
    assert report["returncode"] != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down_probed_and_sized(overlay: str) -> None:
    pods = {
        f"{r['kind']}/{name}": r["spec"]["template"]["spec"]
        for kind in ("Deployment", "Job")
        for name, r in of_kind(overlay, kind).items()
    }
    assert pods
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
    for definition in SERVICES:
        container = pods[f"Deployment/{definition.directory}"]["containers"][0]
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_shipped(overlay: str) -> None:
    built = resources(overlay)
    assert [r for r in built if r["kind"] == "Secret"] == []

    def secret_names(node: object) -> set[str]:
        if isinstance(node, dict):
            refs = [node[k] for k in ("secretRef", "secretKeyRef", "secret") if k in node]
            found = {ref.get("name") or ref.get("secretName") for ref in refs}
            return found.union(*(secret_names(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(secret_names(v) for v in node))
        return set()

    assert secret_names(built) == {"closeloop-secrets"}
    for name, deployment in of_kind(overlay, "Deployment").items():
        if name == "mailpit":
            continue
        env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {"secretRef": {"name": "closeloop-secrets"}} in env_from, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_migration_job(overlay: str) -> None:
    jobs = of_kind(overlay, "Job")
    for definition in SERVICES:
        container = jobs[f"{definition.directory}-migrate"]["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["command"] == [definition.script, "migrate"]
        assert container["image"] == f"closeloop/{definition.name}:0.1.0"


def test_prod_runs_two_replicas_at_least_with_budgets_and_autoscalers() -> None:
    deployments = of_kind("prod", "Deployment")
    budgets = of_kind("prod", "PodDisruptionBudget")
    autoscalers = of_kind("prod", "HorizontalPodAutoscaler")
    for definition in SERVICES:
        name = definition.directory
        assert "replicas" not in deployments[name]["spec"], "the autoscaler owns the count"
        assert budgets[name]["spec"]["minAvailable"] == 1
        assert budgets[name]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == name
        spec = autoscalers[name]["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert spec["minReplicas"] == 2
        # A consumer group gives each partition to one member: more replicas would idle.
        assert spec["maxReplicas"] == (PARTITIONS if name in CONSUMERS else 10)


def test_dev_runs_one_replica_without_autoscaling_and_sends_mail_to_mailpit() -> None:
    deployments = of_kind("dev", "Deployment")
    assert {name: d["spec"]["replicas"] for name, d in deployments.items()} == {
        **{s.directory: 1 for s in SERVICES},
        "mailpit": 1,
    }
    assert of_kind("dev", "HorizontalPodAutoscaler") == {}
    assert of_kind("dev", "PodDisruptionBudget") == {}
    config = of_kind("dev", "ConfigMap")["closeloop-config"]["data"]
    assert (config["NOTIFIER_SMTP_HOST"], config["NOTIFIER_SMTP_PORT"]) == ("mailpit", "1025")
    topics = of_kind("dev", "KafkaTopic")
    assert {t["spec"]["replicas"] for t in topics.values()} == {1}
    assert {t["metadata"]["namespace"] for t in topics.values()} == {"closeloop-dev"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_are_strimzi_kafka_topics_with_six_partitions(overlay: str) -> None:
    topics = of_kind(overlay, "KafkaTopic")
    assert len(topics) == 7
    assert {t["spec"]["partitions"] for t in topics.values()} == {PARTITIONS}
    assert topics["closeloop-changes"]["spec"]["config"]["retention.ms"] == -1
    # Erasure requests name the person: kept 14 days, not forever (docs/privacy.md).
    assert topics["closeloop-privacy"]["spec"]["config"]["retention.ms"] == 14 * 24 * 3600 * 1000
    config = of_kind(overlay, "ConfigMap")["closeloop-config"]["data"]
    assert int(config["KAFKA_TOPIC_PARTITIONS"]) == PARTITIONS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_allow_the_known_paths(overlay: str) -> None:
    policies = of_kind(overlay, "NetworkPolicy")
    deny = policies["closeloop-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def egress_ports(name: str) -> set[tuple[str, object]]:
        return {
            (p["protocol"], p["port"])
            for rule in policies[name]["spec"]["egress"]
            for p in rule["ports"]
        }

    assert egress_ports("closeloop-egress-dns") == {("UDP", 53), ("TCP", 53)}
    assert egress_ports("closeloop-egress-kafka") == {("TCP", 9092)}
    assert egress_ports("closeloop-egress-postgres") == {("TCP", 5432)}
    assert egress_ports("loop-orchestrator-egress-scoring") == {("TCP", 8002)}
    # Privacy exports: ingest asks the three other APIs.
    assert egress_ports("ingest-egress-privacy-exports") == {
        ("TCP", 8002),
        ("TCP", 8003),
        ("TCP", 8004),
    }
    smtp = {("TCP", 1025)} if overlay == "dev" else {("TCP", 25), ("TCP", 465), ("TCP", 587)}
    assert egress_ports("notifier-egress-smtp") == smtp
    scoring_in = policies["scoring-ingress-loop-orchestrator"]["spec"]["ingress"][0]
    assert scoring_in["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "loop-orchestrator"
    )
    metrics_in = policies["closeloop-ingress-metrics"]["spec"]["ingress"][0]
    assert metrics_in["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    web_in = policies["closeloop-ingress-from-ingress-controller"]["spec"]
    assert web_in["podSelector"]["matchExpressions"][0]["values"] == ["ingest", "notifier"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_each_service_labelled_as_the_rules_expect(overlay: str) -> None:
    monitor = of_kind(overlay, "ServiceMonitor")["closeloop"]["spec"]
    selected = monitor["selector"]["matchExpressions"][0]["values"]
    assert selected == [s.directory for s in SERVICES]
    endpoint = monitor["endpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert endpoint["relabelings"][0]["targetLabel"] == "service"
    services = of_kind(overlay, "Service")
    for definition in SERVICES:
        ports = {p["name"]: p["port"] for p in services[definition.directory]["spec"]["ports"]}
        assert ports == {"http": definition.port, "metrics": 9100}
