"""The same `App` as an ASGI application, to measure Kaizen's transport against well-kept servers.

    python -m model_packages.serving.asgi uvicorn   # uvicorn, http=httptools, loop=uvloop
    python -m model_packages.serving.asgi granian   # granian (Rust HTTP, asyncio ASGI interface)

Settings come from the environment as for the runtime. This is a benchmark adapter (bench/serving/run.py
rows `kaizen-uvicorn` and `kaizen-granian`), not the image's entry point.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from model_packages.errors import PackageError
from model_packages.serving.messages import Request
from model_packages.serving.runtime import Runtime
from model_packages.serving.settings import Settings


class AsgiApp:
    """ASGI 3 over `App.handle`: lifespan runs the model's life (`runtime.Runtime`, as `server.Server` does),
    every HTTP request is one `handle` call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime(settings)
        self.log = self.runtime.log
        self.app = self.runtime.app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body, too_large, more = [], False, True
        size = 0
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > self.settings.max_body_bytes
            if not too_large:
                body.append(chunk)
            more = message.get("more_body", False)
        headers = {k.lower(): v for k, v in scope["headers"]}
        response = self.app.handle(Request(scope["method"], scope["path"], headers, b"".join(body), too_large))
        out = [(b"content-type", response.content_type.encode()), (b"content-length", b"%d" % len(response.body))]
        out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers)
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": response.body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        flusher: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    runner = await asyncio.get_running_loop().run_in_executor(None, self.runtime.load)
                except PackageError as error:
                    self.runtime.fail(error)
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                self.runtime.start(runner)
                flusher = asyncio.create_task(self.runtime.flush_logs())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.runtime.drain()
                if flusher is not None:
                    flusher.cancel()
                self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def app_from_env() -> AsgiApp:
    return AsgiApp(Settings.from_env())


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    server = argv[0] if argv else "uvicorn"
    if server == "uvicorn":
        import uvicorn

        app = AsgiApp(settings)
        try:
            uvicorn.run(app, host=settings.host, port=settings.port, http="httptools", loop="uvloop",
                        lifespan="on", access_log=False, log_level="warning")
        except SystemExit as exit_:  # uvicorn exits 3 when startup fails: the runtime's code (1) instead
            return app.runtime.exit_code or (exit_.code if isinstance(exit_.code, int) else 1)
        return app.runtime.exit_code
    if server == "granian":
        from granian.constants import Interfaces, Loops
        from granian.server import Server as Granian

        Granian("model_packages.serving.asgi:app_from_env", address=settings.host, port=settings.port,
                interface=Interfaces.ASGI, workers=1, loop=Loops.uvloop, log_access=False,
                factory=True).serve()  # type: ignore[call-arg]
        return 0
    print(f"usage: python -m model_packages.serving.asgi uvicorn|granian (got {server!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
