"""The Kaizen serving runtime: one image that passes every cloud's serving contract.

Modules: `launch` (entry point), `server` (HTTP transport), `workers` (processes sharing the port),
`app` (routes), `runner` (between HTTP and the model), `runtime` (the model's life), `settings`.
"""
