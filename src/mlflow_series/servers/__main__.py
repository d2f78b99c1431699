"""python -m mlflow_series.servers: see :mod:`mlflow_series.servers.cli`."""

import sys

from mlflow_series.servers.cli import main

sys.exit(main())
