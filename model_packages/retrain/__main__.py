"""`python -m model_packages.retrain retrain ...`: the trainer image's `kaizen` (only `retrain`), so
the image needs neither the build tooling nor the cloud SDKs of the full CLI."""

from __future__ import annotations

import typer

from model_packages.retrain.commands import register

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Kaizen trainer: kaizen retrain PIPELINE ...")
register(app)


@app.callback()
def _main() -> None:
    """Kaizen trainer."""


if __name__ == "__main__":
    app()
