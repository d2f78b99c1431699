"""Switch off MLflow's "create the missing tables and migrate" shortcut in `mlflow server`.

The upgrade tests put this folder on PYTHONPATH. The pinned MLflow upgrades a store by itself
when a table its code knows is missing (a store of any older release lacks the newest tables),
and refuses it when only existing tables changed (mlflow/store/db/utils.py: _all_tables_exist,
_initialize_tables, _verify_schema). With the shortcut off, its server takes the refusal path
for a store of an older release, as a release whose migrations only change existing tables does,
so the tests can show the refusal message and that `make upgrade` then works on real old data.
Only processes started as `python -m mlflow server` are touched.
"""

import sys

if sys.orig_argv[1:4] == ["-m", "mlflow", "server"]:
    import mlflow.store.db.utils as db_utils

    db_utils._all_tables_exist = lambda engine: True
