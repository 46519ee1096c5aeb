"""The deployment artifacts pass their linters: cfn-lint and checkov on the CloudFormation
templates, checkov and kubernetes-validate on the Kubernetes manifests. Each finding a linter
still reports is explained where it is skipped, in the artifact itself."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from image_service.settings import Settings
from tests.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LINTERS = ROOT / ".venv-deploy" / "bin"
TEMPLATES = sorted(
    [*(DEPLOY / "cloudformation").glob("*.yaml"), DEPLOY / "lambda" / "template.yaml"]
)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    tool = LINTERS / argv[0]
    # Failing, not skipping: `make test` installs them (deploy/requirements-lint.txt).
    assert tool.exists(), f"{tool} is missing: run `make test` or `make deploy-lint`"
    return subprocess.run(
        [str(tool), *argv[1:]], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_cfn_lint_passes(template: Path) -> None:
    result = _run("cfn-lint", str(template))
    assert result.returncode == 0, result.stdout + result.stderr


def _checkov(directory: Path, framework: str) -> None:
    result = _run(
        "checkov",
        *("--directory", str(directory), "--framework", framework),
        *("--quiet", "--compact", "--skip-download"),  # no calls home
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed checks:" in result.stdout  # it did scan something


@pytest.mark.parametrize("directory", ["cloudformation", "lambda"])
def test_checkov_passes_on_the_cloudformation_templates(directory: str) -> None:
    _checkov(DEPLOY / directory, "cloudformation")


# -- Kubernetes: each kustomization rendered (tests/kustomize.py), then validated --------------

KUSTOMIZATIONS = [DEPLOY / "kubernetes" / "base", DEPLOY / "kubernetes" / "overlays" / "production"]


@pytest.fixture(params=KUSTOMIZATIONS, ids=lambda path: path.name)
def rendered(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[dict[str, Any]], Path]:
    documents = render(request.param)
    manifest = tmp_path / "manifests.yaml"
    manifest.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return documents, manifest


def test_the_manifests_are_valid_kubernetes(rendered: tuple[list[Any], Path]) -> None:
    _, manifest = rendered
    result = _run("kubernetes-validate", "--strict", "--kubernetes-version", "1.31", str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource deployment/image-service-api" in result.stdout + result.stderr


def test_checkov_passes_on_the_manifests(rendered: tuple[list[Any], Path]) -> None:
    _checkov(rendered[1].parent, "kubernetes")


def test_the_pods_are_probed_drained_and_locked_down(rendered: tuple[list[Any], Path]) -> None:
    documents, _ = rendered
    grace = Settings(jwt_secret="x" * 32).shutdown_grace_seconds
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    for name in ("image-service-api", "image-service-worker"):
        assert {("Deployment", name), ("HorizontalPodAutoscaler", name)} <= kinds
        assert ("PodDisruptionBudget", name) in kinds
    assert ("Service", "image-service-api") in kinds
    assert ("ServiceAccount", "image-service") in kinds
    deployments = [doc for doc in documents if doc["kind"] == "Deployment"]
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "image-service"
        assert pod["terminationGracePeriodSeconds"] > grace
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"requests", "limits"} <= set(container["resources"])
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    api = next(d for d in deployments if d["metadata"]["name"] == "image-service-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
