"""Log Analytics (explicit retention) + workspace-based Application Insights + action group."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure


@dataclass(frozen=True)
class ObservabilityArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    base_name: str
    retention_days: int
    provider: azure.Provider | None = None  # invokes go to the stack's provider too
    action_group_id: str | None = None
    emails: list[str] = field(default_factory=list)


class Observability(pulumi.ComponentResource):
    workspace_id: pulumi.Output[str]
    workspace_customer_id: pulumi.Output[str]
    workspace_shared_key: pulumi.Output[str]
    app_insights_id: pulumi.Output[str]
    app_insights_connection_string: pulumi.Output[str]
    action_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        workspace = azure.operationalinsights.Workspace(
            f"{name}-logs",
            azure.operationalinsights.WorkspaceArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                workspace_name=f"{args.base_name}-logs",
                sku=azure.operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
                retention_in_days=args.retention_days,
            ),
            opts=child,
        )
        insights = azure.applicationinsights.Component(
            f"{name}-appinsights",
            resource_group_name=args.resource_group_name,
            location=args.location,
            resource_name_=f"{args.base_name}-ai",
            kind="web",
            application_type="web",
            workspace_resource_id=workspace.id,
            ingestion_mode="LogAnalytics",  # workspace-based: retention is the workspace's
            opts=child,
        )
        keys = azure.operationalinsights.get_shared_keys_output(
            resource_group_name=args.resource_group_name,
            workspace_name=workspace.name,
            opts=pulumi.InvokeOutputOptions(provider=args.provider),
        )
        if args.action_group_id is not None:
            action_group_id: pulumi.Output[str] = pulumi.Output.from_input(args.action_group_id)
        else:
            group = azure.monitor.ActionGroup(
                f"{name}-actions",
                resource_group_name=args.resource_group_name,
                location="global",
                action_group_name=f"{args.base_name}-alerts",
                group_short_name="kaizen",
                enabled=True,
                email_receivers=[
                    azure.monitor.MicrosoftCommonEmailReceiverArgs(
                        name=f"email-{i}", email_address=email, use_common_alert_schema=True
                    )
                    for i, email in enumerate(args.emails)
                ],
                opts=child,
            )
            action_group_id = group.id
        self.workspace_id = workspace.id
        self.workspace_customer_id = workspace.customer_id
        self.workspace_shared_key = pulumi.Output.secret(keys.primary_shared_key.apply(lambda k: k or ""))
        self.app_insights_id = insights.id
        self.app_insights_connection_string = insights.connection_string
        self.action_group_id = action_group_id
        self.register_outputs(
            {
                "workspace_id": self.workspace_id,
                "app_insights_id": self.app_insights_id,
                "action_group_id": self.action_group_id,
            }
        )
