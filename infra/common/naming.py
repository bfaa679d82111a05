"""Physical names that fit each cloud's rules, stable per (project, stack, model)."""

from __future__ import annotations

import hashlib
import re


def physical_name(
    *parts: str,
    max_len: int = 63,
    sep: str = "-",
    lower: bool = True,
    allowed: str = r"a-z0-9",
    must_start_with_letter: bool = True,
) -> str:
    """Join `parts` with `sep`, drop characters outside `allowed`, and if too long keep a
    prefix plus a short hash of the full name, so names stay unique and deterministic."""
    text = sep.join(p for p in parts if p)
    if lower:
        text = text.lower()
    keep = allowed + re.escape(sep) if sep else allowed
    text = re.sub(f"[^{keep}]+", sep, text) if sep else re.sub(f"[^{keep}]+", "", text)
    if sep:
        text = re.sub(f"{re.escape(sep)}+", sep, text).strip(sep)
    if must_start_with_letter and not text[:1].isalpha():
        text = "k" + sep + text if sep else "k" + text
    if len(text) > max_len:
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        head = text[: max_len - len(digest) - len(sep)].rstrip(sep)
        text = f"{head}{sep}{digest}"
    return text


def alnum_name(*parts: str, max_len: int) -> str:
    """Names without separators (Azure storage accounts, container registries)."""
    return physical_name(*parts, max_len=max_len, sep="", allowed=r"a-z0-9")
