"""Image references: the one parser of digest-pinned references, and the names Kaizen gives images.

`REGISTRY/PATH@sha256:<64 hex>` is the only form a stack deploys (a tag moves, a digest does not).
The stack config (`infra/common/config.py`), the policy pack (`infra/policy/guardrails.py`), the
trainer config, `kaizen ci deploy` and the image records (`records.py`) all check it with
:data:`DIGEST_REF` / :meth:`ImageRef.parse`. A model's images live in :func:`image_repository`
under the tag :func:`tag_for` of its version, locally and in every registry.
Pure stdlib: the Pulumi program and the policy pack import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# REGISTRY/PATH@sha256:<64 hex>; a tag (":1.0") is refused, a tag *and* digest too (ambiguous).
DIGEST_REF = re.compile(
    r"^(?P<repository>(?P<registry>[a-z0-9][a-z0-9.-]*(?::[0-9]+)?)/"
    r"(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*))"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
FORM = "REGISTRY/PATH@sha256:<64 hex>"


def is_digest_ref(value: object) -> bool:
    return isinstance(value, str) and DIGEST_REF.match(value) is not None


def check_digest_ref(value: str) -> str:
    """`value` when it is digest-pinned; else ValueError saying what is wrong (a tag, or not a reference)."""
    if is_digest_ref(value):
        return value
    if "@sha256:" not in value and re.search(r":[\w][\w.-]*$", value.rsplit("/", 1)[-1]):
        raise ValueError(f"{value!r} is referenced by tag; give the digest-pinned reference {FORM} "
                         "that `kaizen push` prints")
    raise ValueError(f"{value!r} is not a digest-pinned image reference {FORM}")


@dataclass(frozen=True)
class ImageRef:
    """A parsed digest-pinned image reference."""

    ref: str
    registry: str
    repository: str
    path: str
    digest: str

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        """Parse `ref`; ValueError (naming the problem) when it is not digest-pinned."""
        m = DIGEST_REF.match(check_digest_ref(ref))
        assert m is not None
        return cls(ref=ref, registry=m["registry"], repository=m["repository"], path=m["path"], digest=m["digest"])

    @property
    def digest_hex(self) -> str:
        return self.digest.split(":", 1)[1]

    @property
    def short_digest(self) -> str:
        return self.digest_hex[:12]


def image_repository(name: str) -> str:
    """The repository of model `name`'s images: `kaizen/<name>` (locally and under every registry)."""
    return f"kaizen/{name}"


def tag_for(version: str) -> str:
    """The image tag of a model version: Docker tags allow [A-Za-z0-9_.-], SemVer build metadata uses '+'."""
    return version.replace("+", "_")
