"""Sphinx configuration for satchel's documentation (``make docs``).

Everything is local: no intersphinx (it fetches inventories over the network) and no
extension that downloads anything, so the build needs nothing beyond the ``docs`` extra.
``make docs`` turns warnings into errors (``-W``).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

# The checkout's own source, also when the installed satchel is another one.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

project = "satchel"
author = "the satchel authors"
copyright = "the satchel authors"
try:
    release = package_version("satchel")
except PackageNotFoundError:  # a checkout that was never installed
    release = "dev"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "pallets_sphinx_themes",
]

# Type hints come from the signatures, shown with each documented parameter.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autoclass_content = "both"
# A class that adds no docstring of its own (BoundedCluster.__init__) shows none, rather
# than its driver base class's.
autodoc_inherit_docstrings = False

exclude_patterns = ["_build"]
default_role = "code"

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_title = f"satchel documentation ({release})"
html_short_title = "satchel"
html_show_sourcelink = False
html_sidebars = {
    "index": ["project.html", "localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
