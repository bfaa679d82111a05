"""`kaizen-images.json`: the digest-pinned images the stacks deploy; the one reader and writer.

Format (version 1)::

    {"version": 1,
     "images": [{"model": "iris-classifier", "version": "1.0.0",
                 "reference": "127.0.0.1:5000/kaizen/iris-classifier@sha256:…",
                 "registry": "127.0.0.1:5000", "repository": "kaizen/iris-classifier",
                 "tag": "1.0.0", "digest": "sha256:…", "image_id": "sha256:…",
                 "artifact_sha256": "…", "built_at": "…Z", "created": "…Z", "pushed_at": "…Z"}]}

An entry is an :class:`ImageRecord` (`registry.image_record` makes the one `kaizen push` writes; a
multi-platform push also writes `media_type` and `platforms`). One entry per (registry, model,
version); a later push of the same triple replaces it. Stacks read it with :func:`find_image` and only
ever use ``reference`` (never a tag).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from model_packages.errors import KaizenError
from model_packages.image.refs import check_digest_ref

DEFAULT_PATH = Path("kaizen-images.json")
FORMAT_VERSION = 1


class RecordsError(KaizenError):
    """The image records file is unreadable or has no matching image."""


class NoImageRecorded(RecordsError):
    """The records file holds no image for the model (and version/registry) asked for."""


class ImageRecord(BaseModel):
    """One pushed image: what `kaizen push` records and the stacks deploy (by `reference`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    version: str
    reference: Annotated[str, AfterValidator(check_digest_ref)]
    registry: str
    repository: str  # kaizen/<model>, without the registry
    tag: str
    digest: str
    pushed_at: str  # ISO-8601 UTC, whole seconds: the newest entry of a model wins
    artifact_sha256: str | None = None
    created: str | None = None  # org.opencontainers.image.created of the image
    image_id: str | None = None  # a single-platform image's config digest
    built_at: str | None = None
    media_type: str | None = None  # an OCI image index (multi-platform push)
    platforms: dict[str, str] | None = None  # platform -> digest-pinned reference of its image

    @model_validator(mode="after")
    def _one_image(self) -> ImageRecord:
        if self.reference != f"{self.registry}/{self.repository}@{self.digest}":
            raise ValueError(f"reference {self.reference} is not registry/repository@digest "
                             f"({self.registry}/{self.repository}@{self.digest})")
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        return self.registry, self.model, self.version

    @classmethod
    def parse(cls, entry: Any, where: str = "image record") -> ImageRecord:
        """Validate one entry; RecordsError naming each bad field (a tag instead of a digest too)."""
        try:
            return cls.model_validate(entry)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors())
            raise RecordsError(f"{where} is not a valid image record ({problems})") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def records_path(path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get("KAIZEN_IMAGES_FILE", str(DEFAULT_PATH)))


def load_records(path: str | Path | None = None) -> list[ImageRecord]:
    """Every entry of the records file (none when it does not exist); a malformed one is an error."""
    file = records_path(path)
    if not file.exists():
        return []
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise RecordsError(f"{file} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RecordsError(f"{file} has no `images` list")
    return [ImageRecord.parse(entry, f"{file}: images[{i}]") for i, entry in enumerate(data["images"])]


def record_image(record: ImageRecord, path: str | Path | None = None) -> Path:
    """Add or replace the entry for (registry, model, version); atomic write."""
    file = records_path(path)
    images = [r for r in load_records(file) if r.key != record.key]
    images.append(record)
    images.sort(key=lambda r: (r.model, r.version, r.registry))
    data = {"version": FORMAT_VERSION, "images": [r.to_json() for r in images]}
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kaizen-images.", dir=file.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, file)
    return file


def find_image(
    model: str,
    version: str | None = None,
    registry: str | None = None,
    path: str | Path | None = None,
) -> ImageRecord:
    """The newest recorded entry for `model` (and `version`/`registry` when given)."""
    matches = [
        r
        for r in load_records(path)
        if r.model == model
        and (version is None or r.version == version)
        and (registry is None or r.registry == registry)
    ]
    if not matches:
        raise NoImageRecorded(
            f"no pushed image for model {model}"
            + (f" version {version}" if version else "")
            + (f" in {registry}" if registry else "")
            + f" in {records_path(path)}"
        )
    return max(matches, key=lambda r: r.pushed_at)
