"""The package ships its type information, and the API docstring names every strategy."""

from __future__ import annotations

from importlib import resources

import firepbt


def test_the_package_is_typed() -> None:
    assert resources.files("firepbt").joinpath("py.typed").is_file()


def test_the_run_docstring_names_every_strategy() -> None:
    from firepbt.config import STRATEGIES

    doc = firepbt.run.__doc__ or ""
    assert all(f'"{name}"' in doc for name in STRATEGIES)
