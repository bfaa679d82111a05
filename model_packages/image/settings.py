"""What the image commands read from the environment, read once at command time and passed down.

    KAIZEN_BASE_IMAGE, KAIZEN_BUILDER_IMAGE   default runtime / builder base (`Bases.choose`)
    KAIZEN_IMAGE_SOURCE                       org.opencontainers.image.source (else git's origin)
    KAIZEN_DEBIAN_MIRROR, KAIZEN_DEBIAN_SECURITY_MIRROR   where `kaizen base` gets Debian packages

No other image module reads these: the commands (`kaizen base|build|build-trainer`, `kaizen ci
build`, the retraining loop, the local stack) call :meth:`ImageSettings.from_env` and pass the
result along; a library call without one gets :data:`DEFAULT_SETTINGS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security"


@dataclass(frozen=True)
class ImageSettings:
    base_image: str | None = None
    builder_image: str | None = None
    image_source: str | None = None
    debian_mirror: str = DEBIAN_MIRROR
    debian_security_mirror: str = DEBIAN_SECURITY_MIRROR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ImageSettings:
        env = os.environ if env is None else env
        return cls(
            base_image=env.get("KAIZEN_BASE_IMAGE") or None,
            builder_image=env.get("KAIZEN_BUILDER_IMAGE") or None,
            image_source=env.get("KAIZEN_IMAGE_SOURCE") or None,
            debian_mirror=env.get("KAIZEN_DEBIAN_MIRROR", DEBIAN_MIRROR),
            debian_security_mirror=env.get("KAIZEN_DEBIAN_SECURITY_MIRROR", DEBIAN_SECURITY_MIRROR),
        )


DEFAULT_SETTINGS = ImageSettings()
