"""The README's example runs as written: a complete script (``quadratic.py``) that runs PBT on
worker processes and replays the schedule it found."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(tmp_path: Path) -> None:
    script = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[0]
    (tmp_path / "quadratic.py").write_text(script)
    done = subprocess.run(
        [sys.executable, "quadratic.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best member" in done.stdout and "schedule:" in done.stdout
    assert re.search(r"replayed the schedule of member \d+", done.stdout)
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_the_readme_stays_a_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 200  # the front door: details live in the guides
    for target in re.findall(r"\]\(([^)#]+)\)", text):  # every link leads somewhere
        assert (README.parent / target).is_file(), target


def test_the_readme_glue_is_the_guides_tested_example() -> None:
    """Every other Python block of the README (an adapter's glue) stands, as written, in a
    complete example of the guides, which ``tests/test_docs.py`` runs."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[1:]
    assert blocks
    guides = "".join(p.read_text() for p in (README.parent / "docs" / "guides").glob("*.md"))
    for block in blocks:
        assert block in guides, block
        assert len([line for line in block.splitlines() if line.strip()]) <= 15
