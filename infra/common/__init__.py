"""Shared pieces of every stack, below the targets: validated config (`config`, `local_config`,
`schema`), tags, naming, runtime defaults, cloud rules. The stack output names live in
`model_packages/stack_outputs.py`, beside their readers (CI, retraining), which import no infra.

Import the module you need (`from infra.common.config import StackConfig`); this package loads
nothing itself."""
