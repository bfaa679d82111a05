"""`kaizen ci` refuses a Pulumi backend the workflows could only use with a stored secret, naming the
fix, before any stack operation (and accepts the ones they reach by OIDC)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_packages.ci.stacks import StackError, check_backend
from model_packages.cli import app
from tests.support import ROOT

KMS = "awskms://alias/kaizen-state?region=eu-west-1"


@pytest.mark.parametrize(("env", "kind"), [
    ({"PULUMI_BACKEND_URL": "file:///tmp/state", "PULUMI_CONFIG_PASSPHRASE": "throwaway"}, "file"),
    ({"PULUMI_BACKEND_URL": "s3://kaizen-state", "PULUMI_SECRETS_PROVIDER": KMS}, "s3"),
    ({"PULUMI_BACKEND_URL": "gs://kaizen-state", "PULUMI_SECRETS_PROVIDER": "gcpkms://projects/p/locations/l/"
      "keyRings/r/cryptoKeys/k"}, "gs"),
    ({"PULUMI_BACKEND_URL": "azblob://state", "AZURE_STORAGE_ACCOUNT": "kaizenstate",
      "PULUMI_SECRETS_PROVIDER": "azurekeyvault://v.vault.azure.net/keys/k"}, "azblob"),
    ({"PULUMI_BACKEND_URL": "azblob://state?storage_account=kaizenstate",
      "PULUMI_SECRETS_PROVIDER": "azurekeyvault://v.vault.azure.net/keys/k"}, "azblob"),
    ({"PULUMI_BACKEND_URL": "", "PULUMI_ACCESS_TOKEN": "pul-from-oidc", "GITHUB_ACTIONS": "true"}, "cloud"),
    ({"PULUMI_BACKEND_URL": "https://api.pulumi.com", "PULUMI_ACCESS_TOKEN": "pul-from-oidc"}, "cloud"),
])
def test_backends_the_workflows_reach_without_stored_secrets(env: dict[str, str], kind: str, tmp_path: Path) -> None:
    assert check_backend(env, home=tmp_path) == kind


@pytest.mark.parametrize(("env", "message"), [
    ({"PULUMI_BACKEND_URL": "s3://kaizen-state"}, "PULUMI_SECRETS_PROVIDER is empty"),
    ({"PULUMI_BACKEND_URL": "gs://kaizen-state", "PULUMI_SECRETS_PROVIDER": "passphrase"},
     "PULUMI_SECRETS_PROVIDER=passphrase"),
    ({"PULUMI_BACKEND_URL": "azblob://state", "PULUMI_SECRETS_PROVIDER": "azurekeyvault://v/keys/k"},
     "set AZURE_STORAGE_ACCOUNT"),
    ({"PULUMI_BACKEND_URL": "", "GITHUB_ACTIONS": "true"}, "pulumi/auth-actions"),
    ({"PULUMI_BACKEND_URL": "https://api.pulumi.com"}, "needs PULUMI_ACCESS_TOKEN"),
    ({"PULUMI_BACKEND_URL": "https://api.pulumi.com", "PULUMI_ACCESS_TOKEN": "t",
      "PULUMI_SECRETS_PROVIDER": "passphrase"}, "a stored secret"),
    ({"PULUMI_BACKEND_URL": "ftp://state"}, "not Pulumi Cloud"),
])
def test_backends_needing_a_stored_secret_are_refused(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(StackError, match=message.replace("?", "\\?")):
        check_backend(env, home=tmp_path)


def test_pulumi_cloud_login_on_a_workstation_is_enough_outside_actions(tmp_path: Path) -> None:
    (tmp_path / ".pulumi").mkdir()
    (tmp_path / ".pulumi" / "credentials.json").write_text("{}")
    assert check_backend({"PULUMI_BACKEND_URL": ""}, home=tmp_path) == "cloud"
    with pytest.raises(StackError, match="PULUMI_ACCESS_TOKEN"):
        check_backend({"PULUMI_BACKEND_URL": "", "GITHUB_ACTIONS": "true"}, home=tmp_path)


def test_every_stack_command_refuses_a_passphrase_bucket_backend_before_touching_a_stack() -> None:
    env = {"PULUMI_BACKEND_URL": "s3://kaizen-state", "PULUMI_SECRETS_PROVIDER": "", "PULUMI_CONFIG_PASSPHRASE": "x"}
    image = "r/kaizen/iris@sha256:" + "0" * 64
    for args in (["ci", "deploy", "aws-staging", "--image", image], ["ci", "rollback", "aws-prod"],
                 ["ci", "preview", "up", "--pr", "1", "--target", "aws", "--image", image],
                 ["ci", "preview", "destroy", "--pr", "1", "--target", "aws"], ["ci", "cleanup", "--open", "1"]):
        result = CliRunner().invoke(app, [*args, "--project-dir", str(ROOT)], env=env)
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "would encrypt stack secrets with a passphrase" in said, (args, said)
    assert not (ROOT / "stacks" / "Pulumi.aws-pr-1.yaml").exists()
