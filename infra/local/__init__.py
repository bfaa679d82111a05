"""The `local` target: the whole serving loop on this machine, through the Docker engine.

`infra/local/stack.py` `deploy(cfg)` declares the resources and returns the stack outputs, like the
clouds' `stack.py`; the settings (`kaizen:local`) live below the targets in
`infra/common/local_config.py`.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["scope_name"]


def scope_name(project: str, stack: str) -> str:
    """Prefix of every container, volume and image of one stack (Docker name rules)."""
    prefix = "kaizen" if project.lower() == "kaizen" else f"kaizen-{project}"
    text = re.sub(r"[^a-z0-9_.-]+", "-", f"{prefix}-{stack}".lower()).strip("-")
    if len(text) > 40:
        text = text[:33] + "-" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return text
