"""The report opens in a real browser (headless Chromium) and its plots render."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _runs import nqm_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed"
)

CHECK = """
<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = images.filter((i) => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100);
  document.body.setAttribute("data-images", images.length + "/" + ok.length);
});
</script>
"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "CI must install chromium (see .ci/run)"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


def test_report_renders_its_plots_in_chromium(tmp_path: Path) -> None:
    from firepbt.report import write_report

    result = nqm_run(
        tmp_path / "run",
        dim=50,
        total_steps=400,
        population=4,
        ready_every=50,
        eval_every=10,
        strategy="fire",
        subpopulations=2,
        evaluators=1,
        seed=0,
    )
    html = write_report(result.run_dir)
    probe = html.with_name("probe.html")
    probe.write_text(html.read_text().replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "profile"
    dom = _chromium(f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()).stdout
    assert 'data-images="4/4"' in dom, dom[:500]
    shot = tmp_path / "shot.png"
    _chromium(
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        html.as_uri(),
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] > 1000 and pixels[..., :3].std() > 0.05  # not a blank page
