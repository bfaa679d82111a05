"""Installs `model_packages` as is and the repository's `infra/` as `kaizen_infra`.

`infra` is the name of countless projects' own infrastructure folders: installed under that name,
Kaizen's stack program would shadow a user's `infra/` (or be shadowed by it, since a Pulumi project's
directory comes first on `sys.path`). In this repository `infra/` keeps its name (the layout is part
of the product); its modules import each other relatively, so both names work.
"""

from setuptools import find_packages, setup

INSTALLED_AS = {"infra": "kaizen_infra"}


def _installed(name: str) -> str:
    top, _, rest = name.partition(".")
    return ".".join(filter(None, (INSTALLED_AS.get(top, top), rest)))


setup(
    packages=[_installed(name) for name in find_packages(include=["model_packages*", "infra*"])],
    package_dir={installed: source for source, installed in INSTALLED_AS.items()},
)
