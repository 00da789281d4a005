"""Every deployment example under deploy/ still fits the server: it parses, its flags are accepted,
its probes hit real routes, its grace period covers the drain, and its replicas share adapters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from adapter_formats.cli_args import parse_dataclass
from server import engine_passthrough, lifecycle
from server.app import create_app
from server.config import ServerConfig
from training.recipe import parse_command_line
from training.publish import PublishConfig

DEPLOY = Path(__file__).parents[2] / "deploy"
FILES = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
DOCS = [doc for path in FILES for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
K8S = [doc for doc in DOCS if "kind" in doc]
COMPOSE = [doc for doc in DOCS if "services" in doc]
IMAGE = "adapter-serve:"


def one(kind: str) -> dict:
    [doc] = [d for d in K8S if d["kind"] == kind]
    return doc


def server_config(args: list[str]) -> ServerConfig:
    config = parse_dataclass(ServerConfig, [str(a) for a in args])  # exits on a bad flag
    engine_passthrough.parse(config.engine_arg)
    return config


@pytest.fixture(scope="module")
def routes() -> set[str]:
    app = create_app(ServerConfig(model="m"), start=False, registry=CollectorRegistry())
    return {route.path for route in app.routes if hasattr(route, "path")}


def test_every_yaml_file_parses():
    assert FILES and all(isinstance(doc, dict) for doc in DOCS)
    assert all("apiVersion" in doc for doc in K8S)
    assert K8S and COMPOSE


def test_kubernetes_server_container(routes):
    spec = one("Deployment")["spec"]["template"]["spec"]
    [container] = [c for c in spec["containers"] if c["image"].startswith(IMAGE)]
    config = server_config(container["args"])
    assert config.host == "0.0.0.0"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {name: container[name]["httpGet"] for name in
              ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["readinessProbe"]["path"] == "/ready"
    for probe in probes.values():
        assert probe["path"] in routes and port[probe["port"]] == config.port
    # SIGKILL must not cut the drain short: preStop, then --shutdown-timeout, then the abort grace.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] >= \
        pre_stop + config.shutdown_timeout + lifecycle._ABORT_GRACE_SECONDS


def test_kubernetes_replicas_share_the_adapters_volume():
    deployment = one("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    [container] = [c for c in spec["containers"] if c["image"].startswith(IMAGE)]
    config = server_config(container["args"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == config.adapters]
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    claims = {d["metadata"]["name"]: d for d in K8S if d["kind"] == "PersistentVolumeClaim"}
    claim = claims[volume["persistentVolumeClaim"]["claimName"]]
    assert deployment["spec"]["replicas"] >= 2
    assert "ReadWriteMany" in claim["spec"]["accessModes"] and not mount.get("readOnly")


def test_inference_pool_selects_the_server_pods():
    pool, deployment, route = one("InferencePool"), one("Deployment"), one("HTTPRoute")
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                   if c["image"].startswith(IMAGE)]
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == \
        [server_config(container["args"]).port]
    assert pool["spec"]["endpointPickerRef"]["name"]
    backends = [b for rule in route["spec"]["rules"] for b in rule["backendRefs"]]
    assert {"group": "inference.networking.k8s.io", "kind": "InferencePool",
            "name": pool["metadata"]["name"]} in backends


def test_compose_replicas(routes):
    [compose] = COMPOSE
    server = compose["services"]["server"]
    config = server_config(server["command"])
    assert config.host == "0.0.0.0" and server["deploy"]["replicas"] == 2
    [health_url] = re.findall(r"http://[^/'\"]+(/[\w/-]*)", " ".join(server["healthcheck"]["test"]))
    assert health_url in routes
    grace = int(server["stop_grace_period"].removesuffix("s"))
    assert grace >= config.shutdown_timeout + lifecycle._ABORT_GRACE_SECONDS
    # Both replicas mount one named volume at --adapters, which the publish tool writes into.
    [adapters] = [v.split(":")[0] for v in server["volumes"] if v.split(":")[1] == config.adapters]
    assert adapters in compose["volumes"]
    publish = compose["services"]["publish"]
    assert f"{adapters}:{config.adapters}" in publish["volumes"]
    command = publish["entrypoint"]
    assert command[:4] == ["python", "-m", "training", "publish"]
    recipe = parse_command_line("publish", {"args": PublishConfig}, [*command[4:], "--run", "r"])
    assert recipe.args.adapters_dir == config.adapters
    # Publishing runs training code, which only the Dockerfile's `trainer` stage has.
    assert publish["build"]["target"] == "trainer" and publish["image"] != server["image"]


def test_the_server_image_carries_no_training_code():
    stages = re.split(r"^FROM ", (DEPLOY / "Dockerfile").read_text(), flags=re.M)[1:]
    copied = {stage.split()[2]: re.findall(r"^COPY (\S+)", stage, flags=re.M) for stage in stages}
    assert "training" not in copied["server"] and "server" in copied["server"]
    assert copied["trainer"] == ["training"] and stages[1].startswith("server AS trainer")


def test_the_compile_cache_outlives_a_container():
    # A restarted container (exit 3) finds vLLM's compiled model where VLLM_CACHE_ROOT says.
    spec = one("Deployment")["spec"]["template"]["spec"]
    [container] = [c for c in spec["containers"] if c["image"].startswith(IMAGE)]
    root = {e["name"]: e.get("value") for e in container["env"]}["VLLM_CACHE_ROOT"]
    [mount] = [m for m in container["volumeMounts"] if root.startswith(m["mountPath"] + "/")]
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume  # a pod's volume: kept across its containers' restarts
    [compose] = COMPOSE
    server = compose["services"]["server"]
    root = server["environment"]["VLLM_CACHE_ROOT"]
    assert any(v.split(":")[0] in compose["volumes"] and root.startswith(v.split(":")[1] + "/")
               for v in server["volumes"])
