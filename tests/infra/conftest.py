"""Pulumi mocks harness: run the real stack program against a stack file, record resources.

The recording mocks apply the stack transforms the program registers (the mock monitor records
but does not run them), so tag assertions see what the engine would send to the provider.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from tests.support import ROOT

STACKS = ROOT / "stacks"
ACCOUNT = "123456789012"
DIGEST = "sha256:" + "0" * 64


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    provider: str | None
    protect: bool = False
    urn: str = ""
    parent: str = ""
    deps: tuple[str, ...] = ()
    replace_on_changes: tuple[str, ...] = ()


@dataclass
class Run:
    stack: str
    resources: list[Recorded] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> Recorded:
        found = self.of_type(typ)
        assert len(found) == 1, f"{typ}: {len(found)} resources in {self.stack}"
        return found[0]

    @property
    def custom(self) -> list[Recorded]:
        return [r for r in self.resources if r.custom and not r.typ.startswith("pulumi:")]


def _fake_state(typ: str, name: str, inputs: dict[str, Any], region: str = "eu-west-1") -> dict[str, Any]:
    """What the provider would answer, as far as other stacks and resources read it: physical
    names from the inputs, ids/ARNs/URLs in the cloud's formats (e.g. ECR URL, ACR login server)."""
    h = hashlib.sha1(f"{typ}{name}".encode()).hexdigest()[:7]
    auto = f"{name}-{h}"
    state: dict[str, Any] = {}
    if typ.startswith("aws:"):
        res_name = inputs.get("name") or auto
        service = typ.split(":")[1].split("/")[0]
        state["name"] = res_name
        state["arn"] = f"arn:aws:{service}:{region}:{ACCOUNT}:{res_name}"
        if typ == "aws:s3/bucket:Bucket":
            state["bucket"] = auto
            state["arn"] = f"arn:aws:s3:::{auto}"
        if typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            state["arn"] = f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{res_name}"
        if typ == "aws:ecr/repository:Repository":
            state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{res_name}"
            state["arn"] = f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{res_name}"
        if typ == "aws:cloudwatch/dashboard:Dashboard":
            state["dashboardName"] = inputs.get("dashboardName")
    elif typ.startswith("azure-native:"):
        state["name"] = auto
        state["id"] = f"/subscriptions/0000/resourceGroups/rg/providers/{typ.split(':')[1]}/{auto}"
        state["principalId"] = f"principal-{h}"
        state["clientId"] = f"client-{h}"
        rg = inputs.get("resourceGroupName", "rg")
        if typ == "azure-native:machinelearningservices:Workspace":
            state["id"] = (
                f"/subscriptions/0000/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/"
                f"workspaces/{inputs['workspaceName']}"
            )
        if typ == "azure-native:machinelearningservices:OnlineEndpoint":
            state["name"] = inputs["endpointName"]
            state["id"] = (
                f"/subscriptions/0000/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/"
                f"workspaces/{inputs['workspaceName']}/onlineEndpoints/{inputs['endpointName']}"
            )
        if typ == "azure-native:resources:ResourceGroup" and inputs.get("resourceGroupName"):
            state["id"] = f"/subscriptions/0000/resourceGroups/{inputs['resourceGroupName']}"
        if typ == "azure-native:containerregistry:Registry":
            # ACR: the login server is the lower-cased registry name + .azurecr.io
            state["name"] = inputs["registryName"]
            state["loginServer"] = f"{inputs['registryName'].lower()}.azurecr.io"
            state["id"] = (
                f"/subscriptions/0000/resourceGroups/{inputs['resourceGroupName']}/providers/"
                f"Microsoft.ContainerRegistry/registries/{inputs['registryName']}"
            )
        state["customerId"] = f"workspace-{h}"
        state["connectionString"] = f"InstrumentationKey={h}"
        state["latestRevisionName"] = f"{auto}--rev"
        identity = inputs.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
            # inputs take a list of identity ids, the API answers with a map
            state["identity"] = {
                **identity,
                "userAssignedIdentities": {
                    i: {"principalId": "p", "clientId": "c"} for i in identity["userAssignedIdentities"]
                },
            }
    elif typ == "random:index/randomId:RandomId":
        state["hex"] = h[: 2 * int(inputs.get("byteLength", 4))]
        state["id"] = state["hex"]
    elif typ.startswith("gcp:"):
        state["name"] = inputs.get("name") or auto
        state["id"] = f"projects/kaizen-test/{auto}"
        state["email"] = f"{inputs.get('accountId', auto)}@kaizen-test.iam.gserviceaccount.com"
        state["uri"] = f"https://{auto}.a.run.app"
        state["member"] = f"serviceAccount:{inputs.get('accountId', auto)}@kaizen-test.iam.gserviceaccount.com"
    return state


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, stack_outputs: dict[str, dict[str, Any]]) -> None:
        self.stack_outputs = stack_outputs
        self.resources: list[Recorded] = []
        self.transforms: list[Any] = []
        self.region = "eu-west-1"

    def register_transform(self, transform: Any) -> None:
        self.transforms.append(transform)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        if args.typ == "pulumi:pulumi:StackReference":
            ref = args.inputs.get("name") or args.name
            self.resources.append(Recorded(args.typ, args.name, dict(args.inputs), True, args.provider))
            return (ref, {"outputs": self.stack_outputs.get(ref, {}), "name": ref})
        inputs = dict(args.inputs)
        if args.typ == "pulumi:providers:aws" and inputs.get("region"):
            self.region = str(inputs["region"])
        for transform in self.transforms:
            result = transform(
                pulumi.ResourceTransformArgs(
                    custom=bool(args.custom),
                    type_=args.typ,
                    name=args.name,
                    props=inputs,
                    opts=pulumi.ResourceOptions(),
                )
            )
            if result is not None:
                inputs = dict(result.props)
        self.resources.append(Recorded(args.typ, args.name, inputs, bool(args.custom), args.provider))
        state = {**inputs, **_fake_state(args.typ, args.name, inputs, self.region)}
        return (state.get("id") or f"{args.name}-id", state)

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        tok = args.token
        if tok == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "ci", "id": ACCOUNT}
        if tok == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws", "id": "aws"}
        if tok == "azure-native:operationalinsights:getSharedKeys":
            return {"primarySharedKey": "primary-key", "secondarySharedKey": "secondary-key"}
        if tok == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": "0000", "tenantId": "tenant", "clientId": "client", "objectId": "object"}
        if tok in ("gcp:projects/getProject:getProject", "gcp:organizations/getProject:getProject"):
            return {"number": "123456", "projectId": "kaizen-test"}
        return {}


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """Also records what the mocks API leaves out: URN, parent and the `protect` option."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        for r in reversed(self.recording.resources):
            if r.typ == request.type and r.name == request.name:
                r.protect, r.urn, r.parent = bool(request.protect), response.urn, request.parent
                r.deps = tuple(request.dependencies)
                r.replace_on_changes = tuple(request.replaceOnChanges)
                break
        return response


_PLATFORM_OUTPUTS: dict[str, dict[str, Any]] = {}


def platform_outputs() -> dict[str, dict[str, Any]]:
    """Outputs of the three committed platform stacks, from their own program under these mocks
    (what a serving stack's StackReference reads), computed once per session."""
    if not _PLATFORM_OUTPUTS:
        for cloud in ("aws", "azure", "gcp"):
            _PLATFORM_OUTPUTS[f"organization/kaizen/{cloud}-platform"] = run_program(f"{cloud}-platform").outputs
    return _PLATFORM_OUTPUTS


def stack_file(stack: str) -> Path:
    """`aws-dev` -> stacks/Pulumi.aws-dev.yaml; `aws-pr-7` -> the PR template for aws."""
    if "-pr-" in stack:
        return STACKS / "templates" / f"Pulumi.pr.{stack.split('-pr-')[0]}.yaml"
    return STACKS / f"Pulumi.{stack}.yaml"


def load_stack_config(stack: str) -> dict[str, Any]:
    doc = yaml.safe_load(stack_file(stack).read_text())
    return {k.split(":", 1)[1]: v for k, v in doc["config"].items() if k.startswith("kaizen:")}


LAST_MOCKS: RecordingMocks | None = None


def run_program(stack: str, config: dict[str, Any] | None = None, *, preview: bool = False) -> Run:
    """Run infra.program.main() under mocks for `stack` (config from its stack file), as
    `pulumi up` does, or as `pulumi preview` does with `preview=True`."""
    from infra import program

    cfg = load_stack_config(stack) if config is None else config
    outputs = {} if stack.endswith("-platform") else platform_outputs()
    mocks = RecordingMocks(outputs)
    pulumi.runtime.set_mocks(mocks, project="kaizen", stack=stack, preview=preview, monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config({f"kaizen:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()})
    run = Run(stack=stack, resources=mocks.resources)
    global LAST_MOCKS
    LAST_MOCKS = mocks

    @pulumi.runtime.test
    def _main() -> Any:
        outputs = program.main()
        return pulumi.Output.from_input(outputs).apply(run.outputs.update)

    _main()
    return run


_RUNS: dict[str, Run] = {}


@pytest.fixture(scope="session")
def stack_run():
    """Cached per stack name: each stack program runs once per session."""

    def get(stack: str) -> Run:
        if stack not in _RUNS:
            _RUNS[stack] = run_program(stack)
        return _RUNS[stack]

    return get
