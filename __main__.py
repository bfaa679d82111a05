"""Pulumi entry point: the stack program lives in `infra.program`."""

from infra.program import main

main()
