"""Keyless signing of audit statements with Sigstore.

Where a CI identity exists (an OIDC token from GitHub Actions, GitLab, Buildkite, CircleCI or Google
Cloud), a statement is signed with a short-lived key whose Fulcio certificate binds it to that
identity, and the signature is entered in a Rekor transparency log. The result is a Sigstore bundle
(it carries the DSSE envelope, the certificate and the log entry), written to the trail in place of a
locally signed envelope. Verifying it needs no key, only who may sign:

- ``KAIZEN_AUDIT_SIGNER``: ``auto`` (default: keyless when a CI identity is found, else the local
  key), ``key`` or ``sigstore``.
- ``KAIZEN_SIGSTORE_TRUST_CONFIG``: a ClientTrustConfig JSON naming a private Sigstore instance
  (default: the public-good instance, through its TUF repository; its log is public, so a private
  repository's workflow names become public too).
- ``KAIZEN_SIGSTORE_IDENTITY_TOKEN``: an OIDC token to sign with (default: the CI's ambient one).
- ``KAIZEN_AUDIT_ISSUER`` and ``KAIZEN_AUDIT_IDENTITY`` (comma-separated): the OIDC issuer and the
  certificate identities trusted for keyless records, e.g. ``https://token.actions.githubusercontent.com``
  and ``https://github.com/ORG/REPO/.github/workflows/deploy.yml@refs/heads/main``.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_packages.errors import KaizenError

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken
    from sigstore.verify import Verifier

BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
SIGNERS = ("auto", "key", "sigstore")
#: What the CIs that offer an ambient OIDC credential set (the `id` package's detectors read these).
CI_MARKERS = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "GOOGLE_SERVICE_ACCOUNT_NAME")


class KeylessError(KaizenError):
    """Keyless signing was asked for and cannot be done, or a keyless record does not verify."""


def is_bundle(line: Any) -> bool:
    return isinstance(line, dict) and str(line.get("mediaType", "")).startswith(BUNDLE_MEDIA_PREFIX)


def signer_mode() -> str:
    mode = os.environ.get("KAIZEN_AUDIT_SIGNER", "auto") or "auto"
    if mode not in SIGNERS:
        raise KeylessError(f"KAIZEN_AUDIT_SIGNER={mode!r} is not one of {', '.join(SIGNERS)}")
    return mode


def _sigstore() -> None:
    try:
        import sigstore  # noqa: F401
    except ImportError:
        raise KeylessError("keyless signing needs the sigstore package: pip install 'kaizen-ml[sigstore]'") from None


def ambient_token() -> str | None:
    """The OIDC token to sign with: `$KAIZEN_SIGSTORE_IDENTITY_TOKEN`, else the CI's ambient
    credential (read from the CI's environment; None outside CI)."""
    explicit = os.environ.get("KAIZEN_SIGSTORE_IDENTITY_TOKEN")
    if explicit:
        return explicit
    if not any(os.environ.get(name) for name in CI_MARKERS):
        return None
    try:
        from sigstore.oidc import detect_credential
    except ImportError:
        return None
    try:
        return detect_credential()
    except Exception as error:  # a CI that offers a credential but refuses it (missing permission)
        raise KeylessError(f"the CI identity could not be obtained: {error}") from None


@lru_cache(maxsize=4)
def _trust_config(path: str) -> ClientTrustConfig:
    from sigstore.models import ClientTrustConfig

    try:
        if path:
            return ClientTrustConfig.from_json(Path(path).read_text())
        return ClientTrustConfig.production()
    except OSError as error:
        raise KeylessError(f"cannot read the Sigstore trust config {path}: {error}") from None
    except Exception as error:
        raise KeylessError(f"Sigstore trust config {path or '(public-good)'} is unusable: {error}") from None


def _trust_config_path() -> str:
    return os.environ.get("KAIZEN_SIGSTORE_TRUST_CONFIG", "")  # "": the public-good instance


def trust_config() -> ClientTrustConfig:
    _sigstore()
    return _trust_config(_trust_config_path())


class KeylessSigner:
    """Signs statements with a Fulcio certificate for one OIDC identity; one certificate per signer."""

    def __init__(self, token: str) -> None:
        _sigstore()
        from sigstore.oidc import IdentityToken
        from sigstore.sign import Signer, SigningContext

        try:
            self.token: IdentityToken = IdentityToken(token)
        except Exception as error:
            raise KeylessError(f"the OIDC identity token is unusable: {error}") from None
        context = SigningContext.from_trust_config(trust_config())
        self.signer = Signer(self.token, context, True)  # one key and certificate for all its statements

    @property
    def identity(self) -> tuple[str, str]:
        """(issuer, identity) as Fulcio writes them in the certificate."""
        return self.token.issuer, self.token.identity

    def sign(self, statement: dict[str, Any]) -> dict[str, Any]:
        """The Sigstore bundle (as a JSON object) of `statement` in a DSSE envelope."""
        from sigstore.dsse import Statement

        payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
        try:
            bundle = self.signer.sign_dsse(Statement(payload))
        except Exception as error:
            raise KeylessError(f"keyless signing failed: {error}") from None
        return json.loads(bundle.to_json())


@lru_cache(maxsize=4)
def _verifier(path: str) -> Verifier:
    _sigstore()
    from sigstore.verify import Verifier

    return Verifier(trusted_root=_trust_config(path).trusted_root)


def configured_identities() -> list[tuple[str, str]]:
    issuer = os.environ.get("KAIZEN_AUDIT_ISSUER", "")
    names = [n.strip() for n in os.environ.get("KAIZEN_AUDIT_IDENTITY", "").split(",") if n.strip()]
    return [(issuer, name) for name in names] if issuer else []


def open_bundle(line: dict[str, Any], where: str, payload_type: str,
                also_trust: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The DSSE payload of a Sigstore bundle, once its certificate chain, log entry and signature
    verify for a trusted identity (configured ones plus `also_trust`)."""
    identities = tuple(configured_identities()) + also_trust
    if not identities:
        raise KeylessError(f"{where}: a keyless record, and no trusted signer: set KAIZEN_AUDIT_ISSUER and "
                           "KAIZEN_AUDIT_IDENTITY")
    _sigstore()
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import policy

    try:
        bundle = Bundle.from_json(json.dumps(line))
    except Exception as error:
        raise KeylessError(f"{where}: malformed Sigstore bundle: {error}") from None
    rules: list[policy.VerificationPolicy] = [policy.Identity(identity=name, issuer=issuer)
                                              for issuer, name in identities]
    verifier = _verifier(_trust_config_path())
    try:
        kind, payload = verifier.verify_dsse(bundle, rules[0] if len(rules) == 1 else policy.AnyOf(rules))
    except (SigstoreError, ValueError) as error:
        raise KeylessError(f"{where}: the keyless signature does not verify: {error}") from None
    if kind != payload_type:
        raise KeylessError(f"{where}: signed payload is {kind!r}, not {payload_type!r}")
    return payload
