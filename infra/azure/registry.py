"""Azure Container Registry (lives in the long-lived `azure-platform` stack)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure

ACR_PULL_ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"  # built-in AcrPull


@dataclass(frozen=True)
class ContainerRegistryArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    registry_name: str
    sku: str
    protect: bool = True


class ContainerRegistry(pulumi.ComponentResource):
    registry_id: pulumi.Output[str]
    login_server: pulumi.Output[str]

    def __init__(self, name: str, args: ContainerRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:ContainerRegistry", name, None, opts)
        registry = azure.containerregistry.Registry(
            f"{name}-acr",
            azure.containerregistry.RegistryArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                registry_name=args.registry_name,
                sku=azure.containerregistry.SkuArgs(name=args.sku),
                admin_user_enabled=False,
                anonymous_pull_enabled=False,
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.registry_id = registry.id
        self.login_server = registry.login_server
        self.register_outputs({"registry_id": self.registry_id, "login_server": self.login_server})
