"""SLSA v1 provenance of every recorded image push, signed like the audit trail.

The statement's subject is the pushed image digest; its build definition names what the image
was built from, as the image's own labels record it: the model package (name, version, artifact
hash), the runtime lock (flavor and hash), the base image, Kaizen's version and the code revision.
It is written to `<trail dir>/provenance/<digest>.dsse.json` and the push is appended to the
audit trail (`image_push`, with the statement's hash). `verify_pushes` checks each statement's
signature, that it matches its trail record, and that the registry still serves that digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_packages.audit import trail

SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://kaizen.dev/image-build/v1"


def statement(reference: str, labels: dict[str, str]) -> dict[str, Any]:
    repository, digest = reference.split("@", 1)
    dependencies = [
        {"name": "model-artifact", "digest": {"sha256": labels.get("io.kaizen.model.artifact-sha256", "")}},
        {"name": f"lock:{labels.get('io.kaizen.lock', '')}",
         "digest": {"sha256": labels.get("io.kaizen.lock-sha256", "")}},
    ]
    base = labels.get("org.opencontainers.image.base.name", "")
    if "@sha256:" in base:
        dependencies.append({"uri": base, "digest": {"sha256": base.rsplit(":", 1)[1]}})
    revision = labels.get("org.opencontainers.image.revision", "")
    return {
        "_type": trail.STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": {"sha256": digest.split(":", 1)[1]}}],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "model": labels.get("io.kaizen.model.name", ""),
                    "version": labels.get("io.kaizen.model.version", ""),
                    "source": labels.get("org.opencontainers.image.source", ""),
                    "revision": revision,
                },
                "internalParameters": {"kaizen": labels.get("io.kaizen.runtime-version", "")},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": os.environ.get("KAIZEN_BUILDER_ID", "https://kaizen.dev/builder/local")},
                "metadata": {"invocationId": os.environ.get("GITHUB_RUN_ID", ""),
                             "finishedOn": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
            },
        },
    }


def provenance_dir(path: str | Path | None = None) -> Path:
    return trail.trail_path(path).parent / "provenance"


def record_push(reference: str, labels: dict[str, str], path: str | Path | None = None) -> Path:
    """Write the signed provenance of `reference` and append the push to the audit trail."""
    envelope = trail.sign_statement(statement(reference, labels))
    out = provenance_dir(path) / f"{reference.rsplit(':', 1)[1]}.dsse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(envelope, sort_keys=True)
    out.write_text(text + "\n")
    trail.append("image_push", path, image=reference, model=labels.get("io.kaizen.model.name", ""),
                 version=labels.get("io.kaizen.model.version", ""), provenance=out.name,
                 provenance_sha256=hashlib.sha256(text.encode()).hexdigest())
    return out


def verify_pushes(records: list[dict[str, Any]], path: str | Path | None = None,
                  registry_check: bool = True) -> int:
    """Check every `image_push` record's provenance; the number checked."""
    from model_packages.image.registry import Registry, RegistryClient, credentials_for

    keys = trail.public_keys()
    checked = 0
    for record in (r for r in records if r.get("event") == "image_push"):
        where = provenance_dir(path) / str(record.get("provenance", ""))
        try:
            text = where.read_text().strip()
        except OSError:
            raise trail.AuditError(f"record {record['seq']}: provenance {where.name} is missing") from None
        if hashlib.sha256(text.encode()).hexdigest() != record.get("provenance_sha256"):
            raise trail.AuditError(f"record {record['seq']}: provenance {where.name} was changed")
        found = trail.open_statement(json.loads(text), keys, str(where))
        image = str(record["image"])
        repository, digest = image.split("@", 1)
        if found.get("predicateType") != SLSA_PROVENANCE or found["subject"][0]["digest"]["sha256"] != digest[7:]:
            raise trail.AuditError(f"record {record['seq']}: provenance is not about {image}")
        if registry_check:
            host, _, repo = repository.partition("/")
            registry = Registry.parse(host)
            served = RegistryClient(registry, credentials_for(registry.host)).manifest(repo, digest)
            if served is None or served[0] != digest:
                raise trail.AuditError(f"record {record['seq']}: the registry no longer serves {image}")
        checked += 1
    return checked
