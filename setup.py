"""Packages of the distribution (the rest of the metadata: pyproject.toml). The Hydra config
tree lives at the repository's top level (``conf/``) and ships inside the wheel as
``tinyfw/conf`` (package data of ``tinyfw.conf.*``), so an installed package runs from any
directory; a checkout reads ``conf/`` itself (``tinyfw/__main__.py``)."""

from setuptools import find_namespace_packages, setup

CONF = ["tinyfw.conf"] + [f"tinyfw.conf.{p}" for p in find_namespace_packages(where="conf")]

setup(
    packages=find_namespace_packages(include=["tinyfw*", "augment*"]) + CONF,
    package_dir={"tinyfw.conf": "conf"},
    package_data={"tinyfw.data": ["*.conll"], **{p: ["*.yaml"] for p in CONF}},
)
