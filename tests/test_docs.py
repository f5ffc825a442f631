"""The documentation site (``docs/``, ``make docs``): it builds with every warning an error, every
Python block in its pages runs as written, every TOML block parses (a complete config also
validates), and the built site works in a real browser (headless Chromium): the quickstart and an
API page load with no console error, and the search box finds ``replay``."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# A fenced block: ```python ... ``` or ```{code-block} python with options (":caption: x.py").
BLOCK = re.compile(r"^```(\{code-block\} )?(\w+)\n((?::\w+:[^\n]*\n)*)\n?(.*?)^```$", re.M | re.S)


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def blocks(page: Path, language: str) -> list[tuple[str | None, str]]:
    """The page's code blocks in ``language``, each with its caption (a file name) or None."""
    found = []
    for m in BLOCK.finditer(page.read_text()):
        if m.group(2) != language:
            continue
        caption = re.search(r":caption:\s*(\S+)", m.group(3))
        found.append((caption.group(1) if caption else None, m.group(4)))
    return found


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """What ``make docs`` runs: warnings (broken links and references included) are errors."""
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"]
        + [str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = sphinx_build(DOCS, out)
    assert done.returncode == 0, done.stderr[-5000:]
    return out


def test_the_site_builds_with_warnings_as_errors(site: Path) -> None:
    for page in ("index", "guides/quickstart", "api/running", "paper_readings", "search"):
        assert (site / f"{page}.html").is_file(), page
    assert "searchindex.js" in os.listdir(site)
    # the API reference documents every name firepbt exports
    import firepbt

    api = "".join(p.read_text() for p in (site / "api").glob("*.html"))
    missing = [n for n in firepbt.__all__ if f'id="firepbt.{n}"' not in api]
    assert not missing, f"not in the API reference: {missing}"


def test_a_broken_link_or_reference_fails_the_build(tmp_path: Path) -> None:
    # the site's own configuration, on a site of two pages (the whole site takes half a minute)
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=lambda d, names: [n for n in names if n.endswith(".md")])
    shutil.rmtree(docs / "_build", ignore_errors=True)
    shutil.rmtree(docs / "api")
    (docs / "index.md").write_text("# firepbt\n\n```{toctree}\nquickstart\n```\n")
    page = docs / "quickstart.md"
    page.write_text(
        "# Quickstart\n\nSee [the index](index.md) and {py:func}`firepbt.run`.\n\n"
        "See [the missing page](no_such_page.md) and {py:func}`firepbt.no_such_function`.\n"
    )
    done = sphinx_build(docs, tmp_path / "out")
    assert done.returncode != 0
    assert "no_such_page" in done.stderr and "firepbt.no_such_function" in done.stderr
    # the same site without the broken link and reference builds
    page.write_text("# Quickstart\n\nSee [the index](index.md).\n")
    done = sphinx_build(docs, tmp_path / "out-mended")
    assert done.returncode == 0, done.stderr


def test_the_code_block_runner_fails_on_a_failing_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nraise SystemExit('this block fails')\n```\n")
    with pytest.raises(AssertionError, match="this block fails"):
        run_python_blocks(page, tmp_path / "run")


def run_python_blocks(page: Path, where: Path) -> str:
    """Run a page's Python blocks in a fresh directory, as a reader would: a block captioned
    with a file name is saved as that file and run as ``python FILE``; the page's other blocks
    run in order as one script. The quickstart's ``quadratic.py`` is there for every page, as
    the guides assume."""
    where.mkdir(parents=True)
    for caption, code in blocks(DOCS / "guides" / "quickstart.md", "python"):
        if caption:
            (where / caption).write_text(code)
    files, script = [], []
    for caption, code in blocks(page, "python"):
        if caption:
            (where / caption).write_text(code)
            files.append(caption)
        else:
            script.append(code)
    if script:
        (where / "page.py").write_text("\n".join(script))
        files.append("page.py")
    out = []
    for name in files:
        done = subprocess.run(
            [sys.executable, name], cwd=where, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{page.name}, {name}: {done.stderr[-3000:]}"
        out.append(done.stdout)
    return "".join(out)


PYTHON_PAGES = [p for p in pages() if blocks(p, "python")]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_python_block_in_the_docs_runs(page: Path, tmp_path: Path) -> None:
    out = run_python_blocks(page, tmp_path / "run")
    if page.name == "quickstart.md":
        assert "best member" in out and "schedule:" in out
        assert re.search(r"replayed the schedule of member \d+", out)


def test_the_pages_with_python_blocks_are_the_expected_ones() -> None:
    names = {str(p.relative_to(DOCS)) for p in PYTHON_PAGES}
    assert {"guides/quickstart.md", "guides/fire.md", "guides/logging.md"} <= names


def test_every_toml_block_parses_and_a_complete_config_validates() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from firepbt.config import RunConfig

    complete = 0
    for page in pages():
        for _, text in blocks(page, "toml"):
            data = tomllib.loads(text)
            if "trainable" in data:
                RunConfig.from_mapping(data, where=page.name)
                complete += 1
    assert complete >= 1


def test_the_configs_guide_maps_every_run_keyword_and_strategy_option() -> None:
    import inspect

    import firepbt
    from firepbt.config import STRATEGY_OPTIONS

    text = (DOCS / "guides" / "configs.md").read_text()
    table = text[text.index("| `firepbt.run` keyword | in a TOML config |") :]
    table = table[: table.index("\n\n")]
    keywords = set(inspect.signature(firepbt.run).parameters) - {"strategy_options"}
    options = set().union(*STRATEGY_OPTIONS.values())
    missing = sorted(k for k in keywords | options if f"`{k}`" not in table)
    assert not missing, f"the configs guide's table lacks {missing}"


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The site over HTTP on 127.0.0.1, as a docs host serves it."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed"
)


@needs_chromium
def test_the_site_renders_and_its_search_finds_replay(served: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "CI must install chromium (see .ci/run)"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            for path, heading in (
                ("/guides/quickstart.html", "Quickstart"),
                ("/api/running.html", "Running, resuming, replaying"),
            ):
                response = page.goto(served + path)
                assert response is not None and response.ok, path
                page.wait_for_load_state("networkidle")
                assert page.locator("h1").first.inner_text().strip() == heading
                assert page.locator("article").inner_text().count("\n") > 20  # not blank
            page.goto(served + "/guides/quickstart.html")
            page.screenshot(path=str(tmp_path / "quickstart.png"))
            page.fill("input[name=q]", "replay")
            page.press("input[name=q]", "Enter")
            page.wait_for_selector("#search-results ul.search li a", timeout=60_000)
            page.wait_for_load_state("networkidle")
            found = page.locator("#search-results ul.search li a").all_inner_texts()
        finally:
            browser.close()
    assert "firepbt.replay" in found, found
    assert not errors, errors
