"""The one rule for a serving stack's images: in the platform stack's registry, on every cloud."""

from __future__ import annotations

import pytest

from infra.common.config import ConfigError
from infra.common.platform import checked_image

DIGEST = "@sha256:" + "0" * 64
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris"  # the model's own repository
AR = "europe-west4-docker.pkg.dev/kaizen-test/kaizen"  # the platform's repository
ACR = "kaizenazureplatform.azurecr.io"  # the platform's registry


@pytest.mark.parametrize(("image", "location"), [
    (ECR + DIGEST, ECR),
    (AR + "/kaizen/iris" + DIGEST, AR),
    (AR + "/kaizen/iris" + DIGEST, AR + "/"),
    (ACR + "/kaizen/iris-trainer" + DIGEST, ACR),
])
def test_an_image_in_the_platform_location_is_kept(image: str, location: str) -> None:
    assert checked_image(image, location) == image


@pytest.mark.parametrize(("image", "location"), [
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/other" + DIGEST, ECR),  # another model's repository
    (ECR + "2" + DIGEST, ECR),  # a prefix that is not at a '/'
    ("europe-docker.pkg.dev/other/repo/trainer" + DIGEST, AR),
    (ACR + ".evil.example/kaizen/iris" + DIGEST, ACR),
    ("other.azurecr.io/kaizen/iris" + DIGEST, ACR),
    (ACR + "/kaizen/iris" + DIGEST, ""),  # a platform stack without the output
])
def test_an_image_elsewhere_is_refused_naming_the_key(image: str, location: str) -> None:
    with pytest.raises(ConfigError, match=r"^kaizen:retraining\.image: .* is not in the platform stack's registry"):
        checked_image(image, location, "kaizen:retraining.image")
