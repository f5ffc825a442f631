"""The README's Python blocks run as written: the first is a complete script (``quadratic.py``),
the second imports it and runs FIRE PBT."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_blocks_run(tmp_path: Path) -> None:
    script, fire = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (tmp_path / "quadratic.py").write_text(script)
    (tmp_path / "fire_quadratic.py").write_text(fire)
    out = {}
    for name in ("quadratic.py", "fire_quadratic.py"):
        done = subprocess.run(
            [sys.executable, name], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out[name] = done.stdout
    assert "best member" in out["quadratic.py"] and "schedule:" in out["quadratic.py"]
    assert re.search(r"replayed the schedule of member \d+", out["quadratic.py"])
    assert "best member" in out["fire_quadratic.py"] and "schedule:" in out["fire_quadratic.py"]
    assert len(list((tmp_path / "runs").iterdir())) == 2  # each run made its own directory


def test_the_readme_maps_every_run_keyword_and_strategy_option_to_the_config() -> None:
    import inspect

    import firepbt
    from firepbt.config import STRATEGY_OPTIONS

    text = README.read_text()
    table = text[text.index("| `firepbt.run` keyword | in a TOML config |") :]
    table = table[: table.index("\n\n")]
    keywords = set(inspect.signature(firepbt.run).parameters) - {"strategy_options"}
    options = set().union(*STRATEGY_OPTIONS.values())
    missing = sorted(k for k in keywords | options if f"`{k}`" not in table)
    assert not missing, f"README config table lacks {missing}"
