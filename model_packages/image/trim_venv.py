"""Trim an installed venv for a runtime image. Runs inside the builder stage (stdlib only).

    python trim_venv.py VENV [--remove GLOB ...] [--smoke MODULE ...]

- removes byte code caches, test suites, type stubs and C/Cython sources;
- removes parts of numpy never used when serving (distutils, headers, test modules; not f2py:
  ``from numpy import *``, which scipy runs, imports it);
- removes the given extra globs (per-flavor, relative to site-packages or absolute);
- strips symbols from shared objects that are safe to strip: never the libraries that
  auditwheel vendored into ``*.libs`` nor objects with an RPATH/RUNPATH (patchelf rewrote
  those, and ``strip`` can corrupt them: "ELF load command address/offset not page-aligned");
- finally imports the smoke modules, so a trim that broke something fails the build.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

DIRS = {"__pycache__", "tests"}
SUFFIXES = {".pyi", ".pxd", ".pyx", ".c", ".cpp", ".h", ".hpp"}
NUMPY = (
    "numpy/distutils",
    "numpy/_pyinstaller",
    "numpy/_core/include",
    "numpy/_core/lib/pkgconfig",
    "numpy/_core/_simd.*.so",
    "numpy/_core/_multiarray_tests.*.so",
    "numpy/_core/_operand_flag_tests.*.so",
    "numpy/_core/_rational_tests.*.so",
    "numpy/_core/_struct_ufunc_tests.*.so",
    "numpy/_core/_umath_tests.*.so",
)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _has_rpath(path: Path) -> bool:
    out = subprocess.run(
        ["readelf", "-d", str(path)], capture_output=True, text=True, check=False
    ).stdout
    return "(RPATH)" in out or "(RUNPATH)" in out


def _is_elf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"


def strip_objects(site: Path) -> int:
    if shutil.which("strip") is None or shutil.which("readelf") is None:
        return 0
    saved = 0
    for path in sorted(site.rglob("*.so*")):
        if not path.is_file() or path.is_symlink() or not _is_elf(path):
            continue
        if any(part.endswith(".libs") for part in path.relative_to(site).parts):
            continue
        if _has_rpath(path):
            continue
        before = path.stat().st_size
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
        saved += before - path.stat().st_size
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("venv")
    parser.add_argument("--remove", nargs="*", default=[])
    parser.add_argument("--smoke", nargs="*", default=[])
    args = parser.parse_args(argv)
    venv = Path(args.venv)
    sites = sorted(venv.glob("lib/python3*/site-packages"))
    if not sites:
        print(f"no site-packages under {venv}", file=sys.stderr)
        return 1
    site = sites[0]
    for root, dirs, files in os.walk(venv, topdown=True):
        for d in [d for d in dirs if d in DIRS]:
            shutil.rmtree(os.path.join(root, d))
            dirs.remove(d)
        for f in files:
            if os.path.splitext(f)[1] in SUFFIXES:
                os.remove(os.path.join(root, f))
    for pattern in (*NUMPY, *args.remove):
        full = pattern if os.path.isabs(pattern) else str(site / pattern)
        for match in glob.glob(full):
            _remove(match)
    saved = strip_objects(site)
    print(f"trimmed {venv}; strip saved {saved / 1e6:.1f} MB")
    if args.smoke:
        python = venv / "bin" / "python"
        modules = list(args.smoke)
        if emulated():
            # qemu-user shows the guest the host's /proc/cpuinfo; onnxruntime's cpuinfo library
            # then crashes at import (real arm64 hardware is unaffected). Check that its extension is
            # there and importable by path instead; the image tests import it with an arm64 cpuinfo.
            skipped = [m for m in modules if m in CPUINFO_AT_IMPORT]
            modules = [m for m in modules if m not in CPUINFO_AT_IMPORT]
            for name in skipped:
                if not list(site.glob(f"{name}/capi/*.so")):
                    print(f"{name}: no extension module under {site / name}", file=sys.stderr)
                    return 1
                print(f"emulated {platform.machine()} build: {name} not imported (it reads /proc/cpuinfo)")
        code = "; ".join(f"import {m}" for m in modules) or "pass"
        subprocess.run([str(python), "-c", code], check=True)
    return 0


#: Modules whose import parses /proc/cpuinfo for the machine they run on.
CPUINFO_AT_IMPORT = frozenset({"onnxruntime"})


def emulated() -> bool:
    """An arm64 build under qemu-user on an x86 host: the kernel's cpuinfo is the host's."""
    if platform.machine() not in ("aarch64", "arm64"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "CPU implementer" not in text and ("vendor_id" in text or "flags" in text)


if __name__ == "__main__":
    raise SystemExit(main())
