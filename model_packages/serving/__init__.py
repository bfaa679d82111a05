"""The Kaizen serving runtime: one process that passes every cloud's serving contract."""

from model_packages.serving.app import App, Request, Response
from model_packages.serving.settings import Settings

__all__ = ["App", "Request", "Response", "Settings"]
