"""Worker processes import firepbt before every run: heavy modules stay out of that import."""

from __future__ import annotations

import subprocess
import sys


def test_import_firepbt_stays_light() -> None:
    code = (
        "import sys, firepbt, firepbt.examples.nqm, firepbt.examples.toy; "
        "heavy = ('scipy.stats', 'sklearn', 'torch', 'matplotlib', 'ray'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_worker_imports_neither_the_store_nor_the_console() -> None:
    # firepbt's names load on first use: a worker process, which imports the executors and the
    # trainable's module, starts without the store, the strategies and the console.
    code = (
        "import sys, firepbt, firepbt.execution.pool; "
        "loaded = ('firepbt.store', 'firepbt.strategies', 'firepbt.api', 'rich', 'sqlite3'); "
        "print(','.join(m for m in loaded if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_exported_name_is_what_it_names_once_every_submodule_is_loaded() -> None:
    # A submodule named like an exported function would replace it on import.
    code = (
        "import importlib, pkgutil, types, firepbt\n"
        "for m in pkgutil.walk_packages(firepbt.__path__, 'firepbt.'):\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "assert sorted(firepbt.__all__) == sorted(firepbt._EXPORTS), 'exports and __all__'\n"
        "bad = [n for n in firepbt.__all__ if isinstance(getattr(firepbt, n), types.ModuleType)]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
