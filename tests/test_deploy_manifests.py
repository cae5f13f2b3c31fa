"""The container and Kubernetes deployment files: valid, and true to pxserve.

Every overlay under deploy/kubernetes/overlays is rendered with kustomize
(``kubectl kustomize``) and each resource validated, offline, against the
Kubernetes 1.32 schema (kubernetes-validate, strict: unknown fields fail).
Then the facts a later edit could silently break are checked against the
code they depend on: probe paths against the routes pxserve serves, the
/dev/shm volume against the ring sizes pxserve will ask for, the grace
period against the drain, the queue-depth metric against the metric's name.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pxserve.frontend import placement
from pxserve.frontend.app import open_paths
from pxserve.frontend.metrics import Metrics
from pxserve.frontend.placement import SHM_HEADROOM, plan_workers, size_rings
from pxserve.frontend.server import DRAIN_GRACE_S
from pxserve.frontend.supervisor import STOP_GRACE_S
from pxserve.shared.config import MiB, ServerConfig, ServingSettings, load_pipeline_config, load_server_config
from pxserve.shared.devices import parse_devices

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.32.0"
# Custom resources have no schema in Kubernetes itself; their structure is
# checked by the tests below instead.
CUSTOM_KINDS = {"ServiceMonitor"}
# Resident memory measured per worker with the default model (Paddle, CPU),
# plus the front; a pod's memory limit must hold these and its /dev/shm.
WORKER_MEMORY = 600 * MiB
FRONT_MEMORY = 300 * MiB
QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti)?$")
UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (``2``, ``500m``, ``256Mi``) as a number."""
    match = QUANTITY.match(str(text))
    assert match, f"unexpected quantity {text!r}"
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "m" else value * UNITS[unit]


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return only(resources, "Deployment")["spec"]["template"]["spec"]


def container(resources: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(resources)["containers"]
    assert len(containers) == 1
    return containers[0]


def shm_volume(resources: list[dict[str, Any]]) -> dict[str, Any]:
    mounts = {m["mountPath"]: m["name"] for m in container(resources)["volumeMounts"]}
    assert "/dev/shm" in mounts, "the rings need /dev/shm larger than the runtime's 64 MB default"
    (volume,) = [v for v in pod_spec(resources)["volumes"] if v["name"] == mounts["/dev/shm"]]
    return volume


def served_pipeline(resources: list[dict[str, Any]], tmp_path: Path) -> ServerConfig:
    """The pipeline (or serving) config the pods mount, loaded by pxserve's own loader; its
    ``engine`` holds the server-wide Serving settings."""
    config_map = only(resources, "ConfigMap")
    path = tmp_path / "pipeline.yaml"
    path.write_text(config_map["data"]["pipeline.yaml"])
    return load_server_config([str(path)])


def planned_workers(resources: list[dict[str, Any]], serving: ServingSettings) -> int:
    """How many workers pxserve starts in this pod: its own plan_workers, told
    the cores the pod's CPU limit gives it (the cgroup quota it reads)."""
    args = container(resources)["args"]
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    cores = int(quantity(container(resources)["resources"]["limits"]["cpu"]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(placement, "usable_cpu_count", lambda: cores)
        return len(plan_workers(parse_devices(device), serving))


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def test_the_overlays_the_docs_name_exist() -> None:
    assert {"cpu", "gpu", "cpu-queue-autoscaling"} <= set(OVERLAYS)


def test_every_rendered_resource_is_valid_kubernetes(overlay) -> None:
    _, resources = overlay
    kinds = {r["kind"] for r in resources}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ConfigMap", "Secret"} <= kinds
    for resource in resources:
        if resource["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_prometheus_adapter_rule_is_valid_and_names_pxserves_metric() -> None:
    config_map = yaml.safe_load((KUBERNETES / "prometheus-adapter" / "rules.yaml").read_text())
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)
    (rule,) = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    exported = Metrics().queue_depth._name  # what /metrics calls the gauge
    assert rule["seriesQuery"].startswith(f"{exported}{{")
    assert re.fullmatch(rule["name"]["matches"], exported)
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    queue = render("cpu-queue-autoscaling")
    (metric,) = only(queue, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]


def test_probes_use_routes_that_answer_without_a_key(overlay) -> None:
    _, resources = overlay
    spec = container(resources)
    readiness, liveness = spec["readinessProbe"]["httpGet"], spec["livenessProbe"]["httpGet"]
    unguarded = open_paths(load_pipeline_config("image_classification").Serving)
    # Readiness on /health: 503 until every worker has loaded its model.
    assert readiness["path"] == "/health" and readiness["path"] in unguarded
    # Liveness must not be /health, or a loading pod would be killed; /livez
    # answers while loading and is never behind an API key.
    assert liveness["path"] == "/livez" and liveness["path"] in unguarded
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert readiness["port"] in ports and liveness["port"] in ports
    # A busy or slow pod gets a minute before liveness gives up on it.
    probe = spec["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 60
    assert probe["timeoutSeconds"] >= 5


def test_dev_shm_is_memory_backed_and_holds_the_rings(overlay, tmp_path: Path) -> None:
    _, resources = overlay
    volume = shm_volume(resources)
    assert volume["emptyDir"]["medium"] == "Memory"
    shm = int(quantity(volume["emptyDir"]["sizeLimit"]))
    serving = served_pipeline(resources, tmp_path).engine
    workers = planned_workers(resources, serving)
    wanted = (int(serving.request_ring_mb * MiB), int(serving.response_ring_mb * MiB))
    rings = size_rings(workers, serving, shm)  # raises if they cannot fit at all
    assert rings.request_bytes >= wanted[0] and rings.response_bytes >= wanted[1], "rings would be shrunk"
    assert workers * (rings.request_bytes + rings.response_bytes) <= shm * SHM_HEADROOM


def test_resources_match_the_worker_count(overlay, tmp_path: Path) -> None:
    name, resources = overlay
    spec = container(resources)
    requests, limits = spec["resources"]["requests"], spec["resources"]["limits"]
    # Requests equal limits: Guaranteed QoS, and the CPU limit is the cgroup
    # quota pxserve reads to decide how many workers to start.
    assert requests == limits
    cpu = quantity(limits["cpu"])
    assert cpu == int(cpu) and cpu >= 1, "whole cores: one worker per core"
    workers = planned_workers(resources, served_pipeline(resources, tmp_path).engine)
    shm = quantity(shm_volume(resources)["emptyDir"]["sizeLimit"])
    assert quantity(limits["memory"]) >= FRONT_MEMORY + workers * WORKER_MEMORY + shm
    args = spec["args"]
    if name == "gpu":
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert "--use_hpip" in args and args[args.index("--device") + 1] == "gpu"
        assert spec["image"].endswith(":latest-gpu")
        tolerations = pod_spec(resources)["tolerations"]
        assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
    else:
        assert "nvidia.com/gpu" not in limits and "--device" not in args


def test_the_grace_period_outlasts_the_drain(overlay) -> None:
    _, resources = overlay
    spec = pod_spec(resources)
    pre_stop = container(resources)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = float(pre_stop[1]) + DRAIN_GRACE_S + STOP_GRACE_S
    assert spec["terminationGracePeriodSeconds"] > needed


def test_the_pod_runs_as_the_images_non_root_user_read_only(overlay) -> None:
    _, resources = overlay
    spec = pod_spec(resources)
    user = re.search(r"^USER (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user and spec["securityContext"]["runAsUser"] == int(user.group(1)) != 0
    assert spec["securityContext"]["runAsNonRoot"] is True
    security = container(resources)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False


def test_service_pdb_hpa_and_scraping_point_at_the_pods(overlay, tmp_path: Path) -> None:
    _, resources = overlay
    deployment = only(resources, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selected = deployment["spec"]["selector"]["matchLabels"]
    assert selected.items() <= labels.items()
    service = only(resources, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in container(resources)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    assert only(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = only(resources, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    container_ports = {p["containerPort"] for p in container(resources)["ports"]}
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) in container_ports
    # Scrapers send no API key, so the served config must leave /metrics open.
    assert served_pipeline(resources, tmp_path).engine.auth_metrics is False
    for monitor in (r for r in resources if r["kind"] == "ServiceMonitor"):
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        service_ports = {p["name"] for p in service["spec"]["ports"]}
        assert all(
            e["port"] in service_ports and e["path"] == "/metrics" for e in monitor["spec"]["endpoints"]
        )


def test_api_keys_and_pipeline_come_from_the_secret_and_config_map(overlay) -> None:
    _, resources = overlay
    config_map = only(resources, "ConfigMap")
    (secret,) = [r for r in resources if r["kind"] == "Secret" and "api-keys" in r["metadata"]["name"]]
    env = {e["name"]: e for e in container(resources)["env"]}
    reference = env["PXSERVE_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert reference["name"] == secret["metadata"]["name"]
    assert reference["key"] in secret.get("data", {}) | secret.get("stringData", {})
    mounts = {m["name"]: m["mountPath"] for m in container(resources)["volumeMounts"]}
    (volume,) = [v for v in pod_spec(resources)["volumes"] if v.get("configMap")]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    args = container(resources)["args"]
    assert args[args.index("--pipeline") + 1] == f"{mounts[volume['name']]}/pipeline.yaml"


def test_the_dockerfile_keeps_its_promises() -> None:
    """No Docker needed: the facts the README and the manifests rely on."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["tini", "--", "pxserve"\]$', text, re.MULTILINE)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    assert "pxserve --prepare --pipeline all" in text  # every shipped pipeline's models built in
    assert re.search(r"^ARG BASE_IMAGE=", text, re.MULTILINE) and "ARG VARIANT=cpu" in text


def test_the_fleet_overlay_shares_one_job_store_and_one_results_volume(tmp_path: Path) -> None:
    """Several replicas, each told the same PostgreSQL URL (from a Secret) and the same
    ReadWriteMany volume as its data directory, serving the pipelines the job models need."""
    resources = render("documents-fleet")
    assert only(resources, "Deployment")["spec"]["replicas"] >= 2
    env = {e["name"]: e for e in container(resources)["env"]}
    store = env["PXSERVE_JOB_STORE"]["valueFrom"]["secretKeyRef"]
    (secret,) = [r for r in resources if r["kind"] == "Secret" and r["metadata"]["name"] == store["name"]]
    assert base64.b64decode(secret["data"][store["key"]]).startswith(b"postgresql://")
    mounts = {m["name"]: m["mountPath"] for m in container(resources)["volumeMounts"]}
    (volume,) = [v for v in pod_spec(resources)["volumes"] if "persistentVolumeClaim" in v]
    assert mounts[volume["name"]] == env["PXSERVE_DATA_DIR"]["value"]
    claim = only(resources, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == volume["persistentVolumeClaim"]["claimName"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    config = served_pipeline(resources, tmp_path)
    assert {"OCR", "PP-StructureV3"} <= set(config.names)
    assert config.engine.jobs.model_aliases["PaddleOCR-VL-1.6"] == "PP-StructureV3"
