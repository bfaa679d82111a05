"""`kaizen drift report`: every input format, capture records, time ranges, bad input, the page itself."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from model_packages.cli import app
from tests.report.conftest import shifted_rows
from tests.support import EXAMPLES


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["drift", "report", *args])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long paths at the terminal width


def report(package: Path, *inputs: Path, out: Path, extra: tuple[str, ...] = ()) -> dict:
    code, output = run(str(package), *map(str, inputs), "--out", str(out), *extra)
    assert code == 0, output
    return json.loads(out.with_suffix(".json").read_text())


def numbers(data: dict) -> dict:
    """What must not depend on the input format."""
    return {"rows": data["rows"], "verdict": data["verdict"],
            "features": {k: (v["counts"], v["score"]) for k, v in data["features"].items()}}


def test_csv_parquet_jsonl_give_the_same_numbers(iris_pkg: Path, tmp_path: Path) -> None:
    rows = shifted_rows(3000, shift=1.5)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    rows.to_parquet(tmp_path / "rows.parquet")
    rows.to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    results = [report(iris_pkg, tmp_path / f"rows.{ext}", out=tmp_path / f"{ext}.html")
               for ext in ("csv", "parquet", "jsonl")]
    assert numbers(results[0]) == numbers(results[1]) == numbers(results[2])
    first = results[0]
    assert first["rows"] == 3000 and first["calibrated"] is True
    assert first["verdict"]["alarm"] is True, "petal_length moved by 1.5 cm"
    petal = first["features"]["petal_length"]
    assert petal["score"]["alarm"] is True and sum(petal["counts"]) == 3000
    assert abs(sum(petal["current"]) - 1) < 1e-9 and abs(sum(petal["baseline"]) - 1) < 1e-9
    assert first["features"]["sepal_width"]["score"]["statistic"] < petal["score"]["statistic"]


def test_unshifted_rows_do_not_alarm(iris_pkg: Path, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris

    iris: Any = load_iris(as_frame=True)
    data = iris.data
    data.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    sample = data.sample(300, replace=True, random_state=3)
    frame = pd.DataFrame(sample.to_numpy(), columns=data.columns)
    labels = np.array(iris.target_names)[iris.target.to_numpy()[sample.index]]
    frame["prediction"] = labels
    frame.to_csv(tmp_path / "rows.csv", index=False)
    result = report(iris_pkg, tmp_path / "rows.csv", out=tmp_path / "r.html")
    assert result["verdict"]["alarm"] is False, result["verdict"]
    assert result["predicted_rows"] == 300 and result["features"]["__prediction__"]["prediction"] is True


def test_page_is_self_contained_and_small(iris_pkg: Path, tmp_path: Path) -> None:
    shifted_rows(2000, shift=1.0).to_csv(tmp_path / "rows.csv", index=False)
    report(iris_pkg, tmp_path / "rows.csv", out=tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert len(page.encode()) <= 2 << 20
    assert ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">") in page
    assert "<script" not in page.lower() and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "http://" not in page and "https://" not in page
    for feature in ("sepal_length", "sepal_width", "petal_length", "petal_width"):
        assert f'data-feature="{feature}"' in page


def test_capture_records_of_both_layouts_and_time_ranges(iris_pkg: Path, tmp_path: Path) -> None:
    rows = shifted_rows(40, shift=0.5)
    columns = {c: rows[c].tolist() for c in rows.columns}
    kaizen = tmp_path / "kaizen"
    kaizen.mkdir()
    lines = []
    for hour in (9, 10, 11, 12):  # 10 rows per hour-stamped record
        part = {c: v[(hour - 9) * 10:(hour - 8) * 10] for c, v in columns.items()}
        lines.append(json.dumps({"time": f"2026-12-01T{hour:02d}:00:00.000000Z", "request_id": f"r{hour}",
                                 "model": "iris-report", "version": "1.0.0", "route": "invocations", "rows": 10,
                                 "inputs": part, "predictions": ["setosa"] * 10}))
    (kaizen / "capture-1.jsonl").write_text("\n".join(lines) + "\n")
    (kaizen / ".capture-2.jsonl.partial").write_text("{not yet complete")  # never read
    sagemaker = tmp_path / "sm" / "ep" / "AllTraffic" / "2026" / "12" / "01" / "09"
    sagemaker.mkdir(parents=True)
    sm_lines = []
    for hour in (9, 10, 11, 12):
        instances = [dict(zip(rows.columns, r, strict=True)) for r in
                     rows.iloc[(hour - 9) * 10:(hour - 8) * 10].itertuples(index=False)]
        sm_lines.append(json.dumps({"captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                              "data": json.dumps({"instances": instances}), "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                               "data": json.dumps({"predictions": ["setosa"] * 10}), "encoding": "JSON"}},
            "eventMetadata": {"eventId": f"e{hour}", "inferenceTime": f"2026-12-01T{hour:02d}:00:00Z"},
            "eventVersion": "0"}))
    (sagemaker / "00-00-000-x.jsonl").write_text("\n".join(sm_lines) + "\n")
    plain = tmp_path / "rows.csv"
    rows.assign(prediction="setosa").to_csv(plain, index=False)
    reference = report(iris_pkg, plain, out=tmp_path / "plain.html", extra=("--min-rows", "1"))
    for source in (kaizen, tmp_path / "sm"):
        every = report(iris_pkg, source, out=tmp_path / f"{source.name}.html", extra=("--min-rows", "1"))
        assert numbers(every) == numbers(reference), source
        assert every["features"]["__prediction__"]["counts"][1] == 40  # slot 1: "setosa"
        middle = report(iris_pkg, source, out=tmp_path / f"{source.name}-mid.html",
                        extra=("--min-rows", "1", "--since", "2026-12-01T10:00:00Z", "--until", "2026-12-01T11:00:00Z"))
        assert middle["rows"] == 20
        assert middle["features"]["sepal_length"]["counts"] == report(
            iris_pkg, _csv(rows.iloc[10:30], tmp_path / "mid.csv"), out=tmp_path / "midref.html",
            extra=("--min-rows", "1"))["features"]["sepal_length"]["counts"]


def _csv(frame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("content", "expected"), [
    ('{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}\n{"sepal_length": 5.1,\n',
     r"rows\.jsonl:2: not valid JSON"),
    ('{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}\n', r"rows\.jsonl: no column 'petal_width'"),
    ('{"sepal_length": "wide", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}\n',
     r"rows\.jsonl: column 'sepal_length', row 1: 'wide' is not a number"),
    ('[1, 2, 3, 4]\n', r"rows\.jsonl:1: a JSON object is expected"),
])
def test_bad_input_names_the_problem_and_writes_nothing(iris_pkg: Path, tmp_path: Path, content: str,
                                                        expected: str) -> None:
    (tmp_path / "rows.jsonl").write_text(content)
    code, output = run(str(iris_pkg), str(tmp_path / "rows.jsonl"), "--out", str(tmp_path / "out" / "r.html"))
    assert code == 1 and re.search(expected, " ".join(output.split())), output
    assert not (tmp_path / "out").exists()


def test_bad_capture_record_and_csv_column(iris_pkg: Path, tmp_path: Path) -> None:
    sm = tmp_path / "capture.jsonl"
    sm.write_text('{"captureData": {"endpointInput": {"data": "{}", "encoding": "JSON"}}}\n{"captureData": 7}\n')
    code, output = run(str(iris_pkg), str(sm), "--out", str(tmp_path / "r.html"))
    assert code == 1 and "capture.jsonl:1" in output and not (tmp_path / "r.html").exists()
    (tmp_path / "rows.csv").write_text("sepal_length,sepal_width,petal_length\n5.1,3.5,1.4\n")
    code, output = run(str(iris_pkg), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "r.html"))
    assert code == 1 and "no column 'petal_width'" in output and not (tmp_path / "r.html").exists()


def test_package_without_baseline_is_refused(tmp_path: Path) -> None:
    import shutil

    package = Path(shutil.copytree(EXAMPLES / "iris-classifier", tmp_path / "pkg"))
    manifest = yaml.safe_load((package / "kaizen.yaml").read_text())
    manifest["baseline"]["features"] = {}
    (package / "kaizen.yaml").write_text(yaml.safe_dump(manifest))
    (tmp_path / "rows.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n")
    code, output = run(str(package), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "r.html"))
    assert code == 1 and "no baseline" in output and not (tmp_path / "r.html").exists()


class _Charts(HTMLParser):
    """Per chart (svg.chart): the bars drawn with a positive height, by class."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, int]] = {}
        self.current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "svg" and values.get("class") == "chart":
            self.current = values["data-feature"] or ""
            self.charts[self.current] = {"baseline": 0, "current": 0}
        elif tag == "rect" and self.current is not None and float(values.get("height") or 0) > 0:
            self.charts[self.current][values.get("class") or ""] = self.charts[self.current].get(
                values.get("class") or "", 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.current = None


def test_headless_chromium_renders_every_chart(iris_pkg: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    from PIL import Image

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required (scripts/setup.sh installs it)"
    frame = shifted_rows(2000, shift=1.0)
    frame["prediction"] = ["setosa"] * 1000 + ["virginica"] * 1000
    frame.to_csv(tmp_path / "rows.csv", index=False)
    data = report(iris_pkg, tmp_path / "rows.csv", out=tmp_path / "r.html")
    url = (tmp_path / "r.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    parser = _Charts()
    parser.feed(dom)
    assert set(parser.charts) == set(data["features"]) == {"sepal_length", "sepal_width", "petal_length",
                                                            "petal_width", "__prediction__"}
    for name, bars in parser.charts.items():
        assert bars["baseline"] >= 2 and bars["current"] >= 1, (name, bars)
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,1600", url],
                   capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1600)
    colors: list[tuple[int, Any]] = image.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 50, "the screenshot is not blank"
    orange = sum(count for count, rgb in colors if rgb[0] > 200 and 100 < rgb[1] < 140 and rgb[2] < 80)
    assert orange > 2000, "the current distribution's bars are drawn"


def test_sagemaker_records_as_the_endpoint_writes_them(iris_pkg: Path, tmp_path: Path) -> None:
    """Lists in feature order, CSV input, BASE64 output: what SageMaker's own capture holds."""
    import base64

    rows = shifted_rows(6)
    lists = rows.to_numpy().tolist()

    def line(data: str, encoding: str, ctype: str, answers: list[str]) -> str:
        out = base64.b64encode(json.dumps({"predictions": answers}).encode()).decode()
        return json.dumps({"captureData": {
            "endpointInput": {"observedContentType": ctype, "mode": "INPUT", "data": data, "encoding": encoding},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": out,
                               "encoding": "BASE64"}},
            "eventMetadata": {"eventId": "e", "inferenceTime": "2026-11-26T17:00:00Z"}, "eventVersion": "0"})

    csv_text = "\n".join(",".join(str(v) for v in r) for r in lists[3:])
    (tmp_path / "c.jsonl").write_text(
        line(json.dumps({"instances": lists[:3]}), "JSON", "application/json", ["setosa"] * 3) + "\n"
        + line(csv_text, "CSV", "text/csv", ["virginica"] * 3) + "\n")
    rows.assign(prediction=["setosa"] * 3 + ["virginica"] * 3).to_csv(tmp_path / "rows.csv", index=False)
    got = report(iris_pkg, tmp_path / "c.jsonl", out=tmp_path / "c.html", extra=("--min-rows", "1"))
    want = report(iris_pkg, tmp_path / "rows.csv", out=tmp_path / "r.html", extra=("--min-rows", "1"))
    assert numbers(got) == numbers(want) and got["rows"] == 6 and got["predicted_rows"] == 6
