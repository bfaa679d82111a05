"""What a serving stack reads from its platform stack, and the one rule for the images it runs.

Every cloud's serving stack references the platform stack (`kaizen:platformStack`) and refuses an
image (`kaizen:image`, `kaizen:retraining.image`) that is not in the platform's registry: its
repository, the part before `@sha256:`, must be the platform's location or lie below it at a `/`
(ECR: the model's repository URL; Artifact Registry: the repository URL; ACR: the login server).
"""

from __future__ import annotations

from typing import Any

import pulumi

from .config import ConfigError, StackConfig


def checked_image(image: str, location: str, key: str = "kaizen:image") -> str:
    """`image`, if its repository is `location` or below it; else a ConfigError naming `key`."""
    repository = image.split("@", 1)[0]
    base = location.rstrip("/")
    if not base or (repository != base and not repository.startswith(base + "/")):
        raise ConfigError(f"{key}: {image!r} is not in the platform stack's registry {base!r}")
    return image


def platform_stack(cfg: StackConfig) -> pulumi.StackReference:
    """The serving stack's reference to its platform stack (checked present by StackConfig)."""
    if cfg.platform_stack is None:
        raise ConfigError("kaizen:platformStack: missing")
    return pulumi.StackReference("platform", stack_name=cfg.platform_stack)


def platform_image(image: str, location: pulumi.Input[Any], key: str = "kaizen:image") -> pulumi.Output[str]:
    """`image` once the platform's `location` is known, refused (:func:`checked_image`) if not in it."""
    return pulumi.Output.from_input(location).apply(lambda loc: checked_image(image, str(loc), key))
