"""What `kubectl kustomize` makes of deploy/kubernetes, for the features those kustomizations use:
resources (files and bases), namespace, labels (not in selectors), images, and strategic-merge
patches that name their target by kind and name. No kustomize binary is installed here, and a
feature this does not know fails loudly rather than being skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge as kustomize does it for these manifests: maps merge key by key, and
    lists of named maps (containers, ports, env) merge item by item on their name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in base + patch)
    ):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = _merge(by_name.get(item["name"], {}), item)
        return list(by_name.values())
    return patch


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    assert not unknown, f"{directory}: kustomize features this renderer lacks: {unknown}"
    documents: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            documents += render(path)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch_entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / patch_entry["path"]).read_text())
        targets = [
            i
            for i, doc in enumerate(documents)
            if doc["kind"] == patch["kind"] and doc["metadata"]["name"] == patch["metadata"]["name"]
        ]
        assert len(targets) == 1, f"patch {patch_entry['path']} matches {len(targets)} resources"
        documents[targets[0]] = _merge(documents[targets[0]], patch)
    for image in kustomization.get("images", []):
        for doc in documents:
            for container in (
                doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
            ):
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    if "namespace" in kustomization:
        for doc in documents:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = kustomization["namespace"]
    for label in kustomization.get("labels", []):
        assert not label.get("includeSelectors"), "selector labels are not rendered here"
        for doc in documents:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    return documents
