"""The layer between the store and the statistics: one run table, one correctness cube, one
Settings, built once (`build_core`) and read by `valstat stats`, `report` and `diagnose`."""

from valstat.core.build import (EPOCH_COLUMNS, PREDICTION_COLUMNS, RUN_COLUMNS, Core, build_core,
                                check_tables, history_core)
from valstat.core.cube import Cube
from valstat.core.settings import DEFAULT, Settings

__all__ = ["Core", "Cube", "DEFAULT", "EPOCH_COLUMNS", "PREDICTION_COLUMNS", "RUN_COLUMNS",
           "Settings", "build_core", "check_tables", "history_core"]
