"""The study's compute budget as a Tune stopper."""

from __future__ import annotations

from typing import Any

from ray import tune

from studies.storage.results_table import ResultsTable


class DeviceHoursStopper(tune.Stopper):
    """Stops the whole study once the device-hour budget (`study.gpu_hours`) is spent, as the results
    table counts it."""

    def __init__(self, table: ResultsTable, budget_hours: float | None):
        self.table, self.budget = table, budget_hours

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.budget is not None and self.table.device_hours() >= self.budget
