"""Shared pieces of every stack, below the targets: validated config (`config`, `local_config`,
`schema`), output names (`outputs`), tags, naming, runtime defaults, cloud rules.

Import the module you need (`from infra.common.config import StackConfig`); this package loads
nothing itself, so `infra.common.outputs` stays cheap for the readers of stack outputs."""
