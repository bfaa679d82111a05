"""A misspelled provider argument fails type checking against the pinned SDKs.

`infra/` itself is checked by the lint step (scripts/test.sh runs pyright over the tree, infra
included, about a minute on 2 cores); this test proves that check has teeth with these SDK pins:
a probe with misspelled arguments for each cloud must be flagged on exactly those lines.
Set KAIZEN_TYPECHECK_INFRA=1 to also check infra/ here (then it must be clean).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, unavailable

PROBE = """\
import pulumi_aws as aws
import pulumi_azure_native as azure
import pulumi_gcp as gcp

aws.sagemaker.EndpointConfigurationProductionVariantArgs(variant_name="AllTraffic", instance_typ="ml.m5.large")
gcp.cloudrunv2.ServiceTemplateScalingArgs(min_instances=1)
azure.app.IngressArgs(target_prot=8080)
aws.sagemaker.EndpointConfigurationProductionVariantArgs(variant_name="AllTraffic", instance_type="ml.m5.large")
"""

INFRA = ["infra/common", "infra/aws", "infra/azure", "infra/gcp", "infra/policy", "infra/program.py", "__main__.py"]


@pytest.mark.slow
def test_pyright_catches_misspelled_provider_arguments(tmp_path: Path) -> None:
    pyright = Path(sys.executable).with_name("pyright")
    if not pyright.exists():
        unavailable("pyright is not installed in the virtualenv",
                    ci="pyright must be installed in CI (pip install -e .[dev])")
    probe = tmp_path / "probe_misspelled.py"
    probe.write_text(PROBE)
    targets = [str(probe)] + (INFRA if os.environ.get("KAIZEN_TYPECHECK_INFRA") == "1" else [])
    proc = subprocess.run(
        [str(pyright), "--outputjson", *targets], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    report = json.loads(proc.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    elsewhere = [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in errors
        if not d["file"].endswith(probe.name)
    ]
    assert elsewhere == []
    probe_lines = {d["range"]["start"]["line"] + 1 for d in errors if d["file"].endswith(probe.name)}
    assert probe_lines == {5, 6, 7}, errors
