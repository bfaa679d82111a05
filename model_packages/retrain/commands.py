"""`kaizen retrain PIPELINE --data FILE`: train, gate against the deployed champion, package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from model_packages.errors import KaizenError

err = Console(stderr=True)


def _params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--param {item!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def retrain_command(
    pipeline_file: Annotated[Path | None, typer.Argument(help="Python file defining `pipeline = Pipeline(...)`")]
    = None,
    data: Annotated[Path | None, typer.Option(help="New training data (CSV)")] = None,
    out: Annotated[Path, typer.Option(help="Package store: <out>/<name>/<version>, plus the gate report")]
    = Path("packages"),
    champion: Annotated[Path | None, typer.Option(help="The champion package directory")] = None,
    stack: Annotated[str | None, typer.Option(help="Gate against what this stack serves")] = None,
    project_dir: Annotated[Path, typer.Option(help="Pulumi project (with --stack)")] = Path("."),
    cache: Annotated[Path, typer.Option(help="Step cache")] = Path(".kaizen/cache"),
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE pipeline parameter (repeatable)")] = None,
    reject_ok: Annotated[bool, typer.Option(help="Exit 0 when the gate rejects (a normal outcome in CI)")] = False,
    replay: Annotated[Path | None, typer.Option(help="Replay this recorded run.json with a fresh cache and check "
                                                     "the package is byte-identical")] = None,
    backend: Annotated[str, typer.Option(help="Where steps run: inprocess, or ray (a running Ray cluster)")]
    = "inprocess",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster head HOST:PORT (else $RAY_ADDRESS)")] = None,
) -> None:
    """Retrain; a candidate that passes the gate becomes the next package version (exit 0), one that
    fails leaves a report and an audit record and no package (exit 3). With --replay, re-run a
    recorded run (same data, code revision, parameters, seeds, creation time) and compare bytes."""
    from model_packages.retrain.pipeline import load_pipeline
    from model_packages.retrain.run import champion_from_stack, retrain

    if replay is not None:
        from model_packages.reproducible import replay as replay_run

        if stack is not None or param:
            raise typer.BadParameter("--replay takes the recorded parameters and champion: no --stack or --param")
        try:
            typer.echo(json.dumps(replay_run(replay, out, data=data, champion=champion, pipeline_file=pipeline_file)))
        except KaizenError as error:
            err.print(f"[bold red]error:[/] {error}")
            raise typer.Exit(code=1) from None
        return
    if pipeline_file is None or data is None:
        raise typer.BadParameter("give the PIPELINE file and --data (or --replay RUN_JSON)")
    if (champion is None) == (stack is None):
        raise typer.BadParameter("give exactly one of --champion or --stack")
    if backend not in ("inprocess", "ray"):
        raise typer.BadParameter(f"--backend {backend!r}: use inprocess or ray")
    try:
        if stack is not None:
            from model_packages.ci.stacks import Project, outputs_of

            champion = champion_from_stack(outputs_of(Project(project_dir.resolve()), stack), out)
        assert champion is not None
        pipeline = load_pipeline(pipeline_file)
        if backend == "ray":
            from model_packages.retrain.ray_backend import RayBackend

            with RayBackend(ray_address) as cluster:
                outcome = retrain(pipeline, data, champion, out, cache_dir=cache, params=_params(param),
                                  pipeline_file=pipeline_file, backend=cluster)
        else:
            outcome = retrain(pipeline, data, champion, out, cache_dir=cache, params=_params(param),
                              pipeline_file=pipeline_file)
    except KaizenError as error:
        err.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from None
    err.print(outcome.report.read_text())
    typer.echo(json.dumps({"promoted": outcome.promoted, "package": str(outcome.package) if outcome.package else None,
                           "report": str(outcome.report), "executed": outcome.run.executed,
                           "cached": outcome.run.cached, "backend": backend,
                           "nodes": sorted(set(outcome.run.nodes.values()))}))
    if not outcome.promoted and not reject_ok:
        raise typer.Exit(code=3)


def webhook_command(
    config: Annotated[Path, typer.Option(help="Loop config (YAML): pipeline, data, store, stack, mode")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (kaizen:local.alerting.webhookUrl)")] = 9400,
    host: Annotated[str, typer.Option(help="Loopback address to bind")] = "127.0.0.1",
    state: Annotated[Path, typer.Option(help="Handled alerts (JSON)")] = Path(".kaizen/webhook-state.json"),
    alert: Annotated[list[str] | None, typer.Option(help="Alert names that start a run (repeatable)")] = None,
    token_env: Annotated[str, typer.Option(help="Environment variable holding the bearer token")]
    = "KAIZEN_WEBHOOK_TOKEN",
) -> None:
    """Receive Alertmanager's webhook and run the retraining loop once per alert instance (401 bad
    token, 400 malformed payload, 202 run started, 200 already handled)."""
    import ipaddress
    import os

    from model_packages.retrain.loop import load_config, run_loop
    from model_packages.retrain.webhook import Alert, RetrainWebhook

    try:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise typer.BadParameter(f"--host {host}: the webhook binds a loopback address only")
    except ValueError:
        raise typer.BadParameter(f"--host {host!r} is not an IP address") from None
    token = os.environ.get(token_env, "")
    try:
        loop = load_config(config)

        def runner(item: Alert) -> dict[str, Any]:
            result = run_loop(loop, alert=item.key)
            err.print(f"retrain run for {item.name} {item.key}: {json.dumps(result)}")
            return result

        hook = RetrainWebhook(token=token, state=state, runner=runner, alerts=tuple(alert or ["KaizenDrift"]),
                              host=host, port=port)
    except KaizenError as error:
        err.print(f"[bold red]error:[/] {error}" + (f" (set ${token_env})" if "token" in str(error) else ""))
        raise typer.Exit(code=1) from None
    except OSError as error:
        err.print(f"[bold red]error:[/] cannot listen on {host}:{port}: {error}")
        raise typer.Exit(code=1) from None
    err.print(f"kaizen retrain-webhook listening on http://{host}:{hook.port} (stack {loop.stack}, mode {loop.mode})")
    try:
        hook.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hook.stop()


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain_command)
    app.command("retrain-webhook")(webhook_command)
    from model_packages.retrain.blob import retrain_blob_command

    app.command("retrain-blob")(retrain_blob_command)
