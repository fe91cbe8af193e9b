"""Package discovery: every ``autointerp.*`` package found automatically (a new subpackage can
never be left out of the wheel), plus the two data packages that live at the top level of the
repository (``prompts/`` -> ``autointerp.prompts``, ``evals/`` -> ``autointerp.evals``, mapped in
pyproject.toml). Everything else is declared in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["autointerp", "autointerp.*"]),
        "autointerp.prompts",
        "autointerp.evals",
    ]
)
