"""Packaging glue that pyproject.toml cannot express (everything else lives there).

The demo weights and their manifest stay in the top-level `weights/`, their one copy in the
repository (docs/architecture.md); a wheel carries them as the package-data folder
`lungforge/weights/`, where `lungforge.models.catalog` looks first. A static `packages` list in pyproject.toml could do the same
mapping but would silently drop any subpackage added later, so the list is found here.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["lungforge", "lungforge.*"]) + ["lungforge.weights"],
    package_dir={"lungforge.weights": "weights"},
    package_data={"lungforge.weights": ["manifest.toml", "*.safetensors"]},
)
