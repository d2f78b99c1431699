"""Sphinx configuration of the read-along site: the committed notebooks, with their outputs.

Built by `make site` (site/build.py stages the pages, then runs sphinx-build with this folder as
its configuration). The stack is the one under Jupyter Book 1 (Sphinx, MyST-NB and the Sphinx
Book Theme), all from PyPI, so the build needs no network; nothing is executed: the pages show
the outputs committed with the notebooks, which strict nbval proves.
"""

project = "MLflow, hands-on: predicting house prices"
author = "The MLflow notebook series"
copyright = "the MLflow notebook series authors"

root_doc = "index"
extensions = ["myst_nb", "sphinxcontrib.mermaid"]
# The pages `site/build.py` stages: the home page, the notebooks, and the documents they link to.
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
# Links such as `../README.md#the-notebooks` point at headings: give headings anchors.
myst_heading_anchors = 3
myst_enable_extensions = ["html_image"]  # <img> tags in the notebooks' markdown
# The notebooks' ```mermaid blocks (as JupyterLab draws them): the browser draws them with
# mermaid.js from its CDN; offline, the diagram's text shows instead.
myst_fence_as_directive = ["mermaid"]
# The committed outputs, as they are: never run a notebook while building.
nb_execution_mode = "off"
suppress_warnings = ["myst.header"]  # the notebooks' navigation line precedes their H1

html_theme = "sphinx_book_theme"
html_title = "MLflow, hands-on"
html_static_path: list[str] = []
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,  # the .ipynb of each page
    "navigation_with_keys": True,
}
html_last_updated_fmt = None
html_copy_source = True
