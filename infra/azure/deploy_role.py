"""Custom Azure role for the identity that runs `pulumi up` for Kaizen stacks, the condition that
limits which roles it may assign, and the GitHub Actions federated credentials.

Replaces Contributor + User Access Administrator on the subscription: the actions below are the
resource providers' operations for exactly the resource types the stacks declare
(RESOURCE_ACTIONS), and role assignments are limited by an ABAC condition on the assignment of
this role to AcrPull, Storage Blob Data Reader/Contributor and the Kaizen job starter ("Delegate
Azure role assignment management with conditions", https://learn.microsoft.com/en-us/azure/role-based-access-control/delegate-role-assignments-portal).

    python -m infra.azure.deploy_role --subscription <id> --repo org/repo
prints {"roleDefinition", "starterRoleDefinition", "assignmentCondition", "federatedCredentials"};
then `az role definition create --role-definition role.json` (and the same for the starter role:
the one action a drift alert's Logic App needs to start a retraining job, infra/azure/retraining.py) and
`az role assignment create --role "Kaizen deployer" --assignee <app> --scope /subscriptions/<id>
--condition "<assignmentCondition>" --condition-version 2.0`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS

from .jobs import STORAGE_BLOB_DATA_CONTRIBUTOR
from .mlendpoint import STORAGE_BLOB_DATA_READER
from .registry import ACR_PULL_ROLE
from .retraining import START_ACTION, STARTER_ROLE

ROLE_NAME = "Kaizen deployer"
STARTER_ROLE_NAME = "Kaizen job starter"
ASSIGNABLE_ROLES = (ACR_PULL_ROLE, STORAGE_BLOB_DATA_READER, STORAGE_BLOB_DATA_CONTRIBUTOR, STARTER_ROLE)


def _crud(prefix: str) -> list[str]:
    return [f"{prefix}/read", f"{prefix}/write", f"{prefix}/delete"]


RESOURCE_ACTIONS: dict[str, list[str]] = {
    "azure-native:resources:ResourceGroup": [
        *_crud("Microsoft.Resources/subscriptions/resourceGroups"),
        "Microsoft.Resources/deployments/read",
        "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
    ],
    "azure-native:containerregistry:Registry": _crud("Microsoft.ContainerRegistry/registries"),
    "azure-native:managedidentity:UserAssignedIdentity": [
        *_crud("Microsoft.ManagedIdentity/userAssignedIdentities"),
        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
    ],
    "azure-native:authorization:RoleAssignment": [
        *_crud("Microsoft.Authorization/roleAssignments"),
        "Microsoft.Authorization/roleDefinitions/read",
    ],
    "azure-native:app:ManagedEnvironment": [
        *_crud("Microsoft.App/managedEnvironments"),
        "Microsoft.App/managedEnvironments/join/action",
        "Microsoft.App/operationResults/read",
    ],
    "azure-native:app:Job": _crud("Microsoft.App/jobs"),
    "azure-native:logic:Workflow": [
        *_crud("Microsoft.Logic/workflows"),
        "Microsoft.Logic/workflows/triggers/listCallbackUrl/action",
    ],
    "azure-native:app:ContainerApp": [
        *_crud("Microsoft.App/containerApps"),
        "Microsoft.App/containerApps/revisions/read",
        "Microsoft.App/containerApps/listSecrets/action",
    ],
    "azure-native:operationalinsights:Workspace": [
        *_crud("Microsoft.OperationalInsights/workspaces"),
        "Microsoft.OperationalInsights/workspaces/sharedKeys/action",
    ],
    "azure-native:applicationinsights:Component": _crud("Microsoft.Insights/components"),
    "azure-native:monitor:ActionGroup": _crud("Microsoft.Insights/actionGroups"),
    "azure-native:monitor:MetricAlert": _crud("Microsoft.Insights/metricAlerts"),
    "azure-native:monitor:ScheduledQueryRule": _crud("Microsoft.Insights/scheduledQueryRules"),
    "azure-native:monitor:DiagnosticSetting": _crud("Microsoft.Insights/diagnosticSettings"),
    "azure-native:monitor:AutoscaleSetting": _crud("Microsoft.Insights/autoscaleSettings"),
    "azure-native:portal:Dashboard": _crud("Microsoft.Portal/dashboards"),
    "azure-native:storage:StorageAccount": _crud("Microsoft.Storage/storageAccounts"),
    "azure-native:keyvault:Vault": [
        *_crud("Microsoft.KeyVault/vaults"),
        "Microsoft.KeyVault/locations/deletedVaults/read",
        "Microsoft.KeyVault/locations/operationResults/read",
    ],
    "azure-native:machinelearningservices:Workspace": [
        *_crud("Microsoft.MachineLearningServices/workspaces"),
        "Microsoft.MachineLearningServices/workspaces/listKeys/action",
    ],
    "azure-native:machinelearningservices:OnlineEndpoint": _crud(
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    ),
    "azure-native:machinelearningservices:OnlineDeployment": _crud(
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments"
    ),
    "azure-native:machinelearningservices:EnvironmentVersion": [
        *_crud("Microsoft.MachineLearningServices/workspaces/environments/versions"),
        "Microsoft.MachineLearningServices/workspaces/environments/read",
    ],
    # pulumiverse-time: no Azure call
    "time:index/sleep:Sleep": [],
}


def role_definition(subscription_id: str) -> dict[str, Any]:
    actions = sorted({a for acts in RESOURCE_ACTIONS.values() for a in acts})
    return {
        "Name": ROLE_NAME,
        "IsCustom": True,
        "Description": "Runs `pulumi up` for Kaizen stacks: the resource types they declare, nothing else.",
        "Actions": actions,
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": [f"/subscriptions/{subscription_id}"],
    }


def starter_role_definition(subscription_id: str) -> dict[str, Any]:
    """Start a Container Apps job execution, nothing else; assigned by the stacks on one job each."""
    return {
        "Name": STARTER_ROLE_NAME,
        "Id": STARTER_ROLE,
        "IsCustom": True,
        "Description": "Start executions of the Container Apps job it is assigned on (Kaizen retraining).",
        "Actions": [START_ACTION],
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": [f"/subscriptions/{subscription_id}"],
    }


def assignment_condition() -> str:
    """ABAC condition (version 2.0): role assignments only for ASSIGNABLE_ROLES."""
    guids = ", ".join(ASSIGNABLE_ROLES)
    key = "Microsoft.Authorization/roleAssignments:RoleDefinitionId"
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
        f"(@Request[{key}] ForAnyOfAnyValues:GuidEquals {{{guids}}}))"
        " AND "
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
        f"(@Resource[{key}] ForAnyOfAnyValues:GuidEquals {{{guids}}}))"
    )


def federated_credentials(repo: str, environments: Sequence[str] = DEPLOY_ENVIRONMENTS) -> list[dict[str, Any]]:
    """GitHub Actions OIDC subjects for the user-assigned identity: one per environment."""
    subjects = [f"repo:{repo}:environment:{e}" for e in environments]
    return [
        {
            "name": s.split(":", 2)[2].replace(":", "-"),
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": s,
            "audiences": ["api://AzureADTokenExchange"],
        }
        for s in subjects
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--repo", required=True, help="GitHub owner/name trusted through OIDC")
    a = parser.parse_args()
    doc = {
        "roleDefinition": role_definition(a.subscription),
        "starterRoleDefinition": starter_role_definition(a.subscription),
        "assignmentCondition": assignment_condition(),
        "federatedCredentials": federated_credentials(a.repo),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
