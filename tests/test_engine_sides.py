"""The engine's two sides: the worker side (``firepbt.execution``) imports nothing of the
controller side (``firepbt.control``), the store or the strategies, neither at import nor inside
its functions; a worker process loads none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import firepbt

PACKAGE = Path(firepbt.__file__).parent
CONTROLLER_ONLY = ("firepbt.control", "firepbt.store", "firepbt.strategies", "firepbt.api")


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _worker_side_modules() -> list[Path]:
    """The worker side and the modules it imports from firepbt, transitively."""
    seen: dict[str, Path] = {}
    todo = [f"firepbt.execution.{p.stem}" for p in (PACKAGE / "execution").glob("*.py")]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = PACKAGE.parent.joinpath(*name.split(".")).with_suffix(".py")
        if not path.exists():
            path = PACKAGE.parent.joinpath(*name.split("."), "__init__.py")
        if not path.exists():
            continue  # a name imported from a module, not a module
        seen[name] = path
        todo += [m for m in _imported(path) if m.startswith("firepbt.")]
    return list(seen.values())


def test_the_worker_side_imports_nothing_of_the_controller_the_store_or_the_strategies() -> None:
    modules = _worker_side_modules()
    assert len(modules) > 10  # the executors, the runtime, and what they use
    for path in modules:
        bad = {m for m in _imported(path) if m.startswith(CONTROLLER_ONLY)}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}"


def test_a_worker_process_loads_no_module_of_the_controller_side() -> None:
    code = (
        "import sys, firepbt.execution.pool, firepbt.execution.vectorised_pool, "
        "firepbt.execution.worker, firepbt.execution.slots; "
        f"print(','.join(m for m in sys.modules if m.startswith({CONTROLLER_ONLY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
