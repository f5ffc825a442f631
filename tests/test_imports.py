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
