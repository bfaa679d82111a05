"""Named broken packages: each builder breaks a private copy of a package (a fixture's copy, never an
example in the checkout) in one way, in place, and returns it. The test names the failure it expects;
the builder's name says what is wrong with the package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml


def manifest(package: Path) -> dict[str, Any]:
    return yaml.safe_load((package / "kaizen.yaml").read_text())


def rewrite_manifest(package: Path, **changes: object) -> Path:
    """Set top-level kaizen.yaml fields (the artifacts stay as they are)."""
    data = manifest(package)
    data.update(changes)
    (package / "kaizen.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return package


def reseal(package: Path) -> Path:
    """Record the artifact's current sha256, so a changed artifact passes the integrity check."""
    artifact = package / manifest(package)["artifact"]
    return rewrite_manifest(package, artifact_sha256=hashlib.sha256(artifact.read_bytes()).hexdigest())


def hash_mismatch(package: Path, content: bytes = b"garbage") -> Path:
    """The artifact's bytes no longer match the manifest's artifact_sha256 ("corrupt: sha256")."""
    (package / manifest(package)["artifact"]).write_bytes(content)
    return package


def warm_up_fails(package: Path) -> Path:
    """A scikit-learn pipeline package that verifies but raises a ValueError on its first prediction:
    the last step's coefficients are three columns wider than its input. The compiled serving
    artifact, if any, is dropped, so the source model is what loads."""
    import numpy as np
    import skops.io as sio

    from model_packages.loading import load_model

    model = load_model(package, serve_with="source")._estimator  # type: ignore[attr-defined]
    rows, columns = model[-1].coef_.shape
    model[-1].coef_ = np.zeros((rows, columns + 3))  # the matrix product fails at warm-up
    sio.dump(model, package / manifest(package)["artifact"])
    data = manifest(package)
    serving = data.pop("serving", None)
    (package / "kaizen.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if serving is not None:
        (package / serving["artifact"]).unlink()
    return reseal(package)


def untrusted_pickle(package: Path) -> Path:
    """A pickle package whose manifest no longer says `trusted: true` ("refusing to load")."""
    return rewrite_manifest(package, trusted=False)


def swapped_artifact(package: Path, content: bytes) -> Path:
    """The artifact's bytes swapped for `content` and the manifest resealed: the integrity check
    passes, so only the loader can refuse it (not a loadable model, a malicious pickle)."""
    return reseal(hash_mismatch(package, content))
