"""Sphinx configuration for firepbt's documentation site (``make docs``).

Sphinx rather than MkDocs: autodoc imports the package and documents what it really exports,
napoleon reads the Google-style Args/Returns/Raises sections, MyST keeps the guides in Markdown,
and ``-W -n`` turns a broken link, a broken cross-reference or a docstring that does not parse
into a failed build. The search index is built offline, into the site itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "firepbt"
author = "the firepbt developers"
copyright = "2026, the firepbt developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "firepbt"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"show-inheritance": True}  # members: named per directive
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# The site is built offline (no intersphinx), so names of other libraries cannot resolve;
# every firepbt name must.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|torch|ray|scipy|matplotlib|collections|typing|pathlib|os|enum|lightning|pl|transformers)\..*"),
    (r"py:.*", r"(Path|Generator|ArrayLike|NDArray|Any|Callable|Iterator|Iterable|Mapping)"),
    (r"py:.*", r"(abc\.ABC|Module)"),
    # private bases and helpers (a leading underscore) are not part of the API
    (r"py:.*", r"firepbt(\.\w+)*\._\w+.*"),
]
