"""The Kaizen serving runtime: one image that passes every cloud's serving contract.

Modules: `launch` (entry point), `server` (HTTP transport; `asgi` the same app on uvicorn or granian),
`workers` (processes sharing the port), `runtime` (the model's life: load, ready, drift, drain), `app`
(the one middleware), `routes` (the route table; `router` matches it, `openapi` documents it),
`contracts/` (each contract's handlers), `runner` (between HTTP and the model), `settings`, `contract`.
Nothing is imported here: importing a submodule loads only what it needs (tests/serving/test_imports.py).
"""
