"""The twice-run of the notebooks takes minutes: only `make test-twice` collects it.

`make test` and `make test-unit` run pytest on tests/, which holds this folder; without
MLFLOW_SERIES_TWICE in the environment (the make target sets it) its tests are not collected.
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("MLFLOW_SERIES_TWICE") else ["test_*.py"]
