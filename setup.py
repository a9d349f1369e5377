"""The one C extension (clymene/_speedups.c); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("clymene._speedups", ["clymene/_speedups.c"],
                             extra_compile_args=["-O2"])])
