"""Render the pull-request comment `kaizen ci comment` writes, as GitHub shows it, to
docs/img/pr-comment.png (headless Debian chromium). Run: .venv/bin/python docs/render_pr_comment.py"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from markdown_it import MarkdownIt

from model_packages.ci.github import render_comment
from model_packages.retrain.gate import GateSpec, evaluate

HERE = Path(__file__).resolve().parent
CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#1f2328;margin:0;
background:#fff}.c{border:1px solid #d1d9e0;border-radius:6px;margin:16px;}.h{background:#f6f8fa;border-bottom:1px
solid #d1d9e0;padding:8px 16px;color:#59636e}.h b{color:#1f2328}.b{padding:8px 16px}table{border-collapse:collapse}
td,th{border:1px solid #d1d9e0;padding:6px 13px}code{background:#eff1f3;border-radius:6px;padding:.2em .4em;
font-size:85%}pre{background:#f6f8fa;border-radius:6px;padding:12px;font-size:85%;line-height:1.45}
pre code{background:none;padding:0;font-size:100%}h3{margin-top:8px}"""


def main() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 1000)
    champion = np.where(rng.random(1000) < 0.85, y, 1 - y)
    challenger = np.where(rng.random(1000) < 0.91, y, 1 - y)
    gate = evaluate(y, champion, challenger, GateSpec(seed=4)).report()
    # What `kaizen ci preview up --preview-summary` (the `pulumi preview` text) and `--summary` (the
    # update's resource changes) write, as the pull-request workflow passes them to `kaizen ci comment`.
    preview = ("Previewing update (aws-pr-42-models-iris):\n"
               "  ~ kaizen:aws:SageMakerEndpoint endpoint update [diff: ~image]\n"
               "  ~ aws:sagemaker/model:Model endpoint-model replace [diff: ~primaryContainer]\nResources:\n"
               "    ~ 1 to update\n    +-1 to replace\n    2 changes. 14 unchanged")
    update = "pulumi up of aws-pr-42-models-iris: succeeded\n    1 replace\n    14 same\n    1 update"
    digest = "sha256:3f1c9a0d2b7e4c55a1e0f6b9d8c7a6e5f4d3c2b1a09f8e7d6c5b4a3928170605"
    outputs = {"endpointUrl": "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/"
                              "kz-iris-aws-pr-42-models-iris/invocations",
               "image": f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris-classifier@{digest}",
               "imageDigest": digest, "modelVersion": "1.0.3"}
    body = render_comment(42, outputs, {"pulumi preview": preview, "pulumi up": update, "gate report": gate},
                          stack="aws/models/iris")
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(body)
    html = html.replace("<details>", "<details open>")
    page = (f"<html><head><style>{CSS}</style></head><body><div class='c'><div class='h'><b>github-actions</b> "
            f"bot commented</div><div class='b'>{html}</div></div></body></html>")
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.html").write_text(page)
        out = HERE / "img" / "pr-comment.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={out}", "--window-size=980,760", f"file://{tmp}/c.html"],
                       check=True, capture_output=True, timeout=120)
    print(out)


if __name__ == "__main__":
    main()
