"""What `pip install kaizen-ml` puts in site-packages neither shadows nor is shadowed by a user's project.

A Pulumi project's own directory comes first on `sys.path`, and `infra/` is what countless projects
call their infrastructure folder: Kaizen's stack program is installed as `kaizen_infra`, and every
one of its modules must import from a wheel while a decoy `infra` package sits in the working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT

IMPORT_ALL = """
import importlib, pkgutil, sys
import kaizen_infra
names = [m.name for m in pkgutil.walk_packages(kaizen_infra.__path__, "kaizen_infra.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
assert "infra" not in sys.modules, "a kaizen_infra module imported the decoy `infra`"
from kaizen_infra.program import main
print(len(names), kaizen_infra.__file__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("kaizen_ml-*.whl"))


@pytest.mark.slow
def test_the_wheel_installs_only_kaizen_names(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}
        policy = [name for name in archive.namelist() if name.startswith("kaizen_infra/policy/")]
    assert tops == {"kaizen_infra", "model_packages"}
    assert "kaizen_infra/policy/PulumiPolicy.yaml" in policy and "kaizen_infra/policy/__main__.py" in policy


@pytest.mark.slow
def test_every_infra_module_imports_beside_a_users_own_infra_folder(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    project = tmp_path / "project"
    (project / "infra").mkdir(parents=True)
    (project / "infra" / "__init__.py").write_text("raise ImportError('the user project infra package')\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=project, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    count, location = result.stdout.split()
    assert int(count) > 40 and location.startswith(str(site))
