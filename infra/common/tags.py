"""Tags/labels for every taggable resource, applied once by a stack-wide resource transform.

The transform looks a resource type up in its provider SDK (the type registry that the SDK
itself registers) and sets `tags` (AWS, Azure) or `labels` (GCP resources with provider-managed
labels, i.e. those exposing `effective_labels`) on every resource that has them. Explicit tags on
a resource win over the stack-wide ones.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pulumi

from .config import StackConfig

_PACKAGES = {"aws": "pulumi_aws", "azure-native": "pulumi_azure_native", "gcp": "pulumi_gcp"}


def stack_tags(cfg: StackConfig, project: str, stack: str) -> dict[str, str]:
    """The tag set of a stack (keys are valid on all three clouds)."""
    tags = {
        "kaizen-project": project,
        "kaizen-stack": stack,
        "owner": cfg.owner,
        "cost-center": cfg.cost_center,
    }
    if cfg.model is not None:
        tags["kaizen-model"] = cfg.model.name
        tags["kaizen-model-version"] = cfg.model.version
    if cfg.image is not None:
        tags["kaizen-image-digest"] = cfg.image_ref.digest
    return tags


def gcp_labels(tags: dict[str, str]) -> dict[str, str]:
    """GCP label values: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    out = {}
    for key, value in tags.items():
        v = re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
        out[key] = v
    return out


@functools.cache
def _type_index(package: str) -> dict[str, tuple[str, str]]:
    """type token -> (python module, class name), from the SDK's own registration table."""
    mod = importlib.import_module(package)
    source = Path(mod.__file__ or "").read_text()
    m = re.search(r'resource_modules="""(.*?)"""', source, re.S)
    if m is None:
        return {}
    index: dict[str, tuple[str, str]] = {}
    for entry in json.loads(m.group(1)):
        for token, cls in entry["classes"].items():
            index[token] = (entry["fqn"], cls)
    return index


@functools.cache
def tag_property(type_token: str) -> str | None:
    """`tags`/`labels` if resources of this type carry user tags, else None."""
    pkg = type_token.split(":", 1)[0]
    package = _PACKAGES.get(pkg)
    if package is None:
        return None
    found = _type_index(package).get(type_token)
    if found is None:
        return None
    cls: Any = getattr(importlib.import_module(found[0]), found[1], None)
    if cls is None:
        return None
    params = inspect.signature(cls._internal_init).parameters
    if pkg == "gcp":
        return "labels" if "labels" in params and hasattr(cls, "effective_labels") else None
    return "tags" if "tags" in params else None


def make_tag_transform(tags: dict[str, str]) -> pulumi.ResourceTransform:
    gcp = gcp_labels(tags)

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if not args.custom:
            return None
        prop = tag_property(args.type_)
        if prop is None:
            return None
        wanted = gcp if args.type_.startswith("gcp:") else tags
        raw: Any = args.props.get(prop)
        existing: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        props = dict(args.props)
        props[prop] = {**wanted, **existing}
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return transform


def register_tag_transform(cfg: StackConfig) -> dict[str, str]:
    """Register the stack-wide tag transform; call before declaring any resource."""
    tags = stack_tags(cfg, pulumi.get_project(), pulumi.get_stack())
    pulumi.runtime.register_resource_transform(make_tag_transform(tags))
    return tags
