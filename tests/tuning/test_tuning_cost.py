"""A worker's database cost per trial: what plain Optuna costs, whatever the size of the budget.

Counted with a SQLAlchemy listener on the real PostgreSQL: statements sent and rows read, from
the first trial's objective on (a worker reads the queued slots once when it starts: not per trial).
"""

from __future__ import annotations

from contextlib import contextmanager

import optuna
import pytest
import sqlalchemy as sa

from driftlab import tuning
from driftlab.config import load_config_text
from support.tuning import experiment_text

pytestmark = pytest.mark.db

TRIALS = 30


class SqlCount:
    def __init__(self) -> None:
        self.statements = self.rows = self.stale_checks = 0
        self.on = False

    def objective(self, trial: optuna.Trial) -> float:
        self.on = True
        return trial.suggest_float("x", -2.0, 2.0) ** 2

    def before(self, conn, cursor, statement, *args) -> None:
        if not self.on:
            return
        self.statements += 1
        if "LEFT OUTER JOIN trial_heartbeats" in statement:
            self.stale_checks += 1

    def after(self, conn, cursor, statement, *args) -> None:
        if self.on and statement.lstrip().upper().startswith("SELECT"):
            self.rows += max(cursor.rowcount, 0)


@contextmanager
def counting():
    count = SqlCount()
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count.before)
    sa.event.listen(sa.engine.Engine, "after_cursor_execute", count.after)
    try:
        yield count
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count.before)
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", count.after)


def _driftlab(budget: int, campaign: str) -> SqlCount:
    config = load_config_text(experiment_text(budget, heartbeat=10), "experiment")
    tuning.create_study(config, campaign)
    with counting() as count:
        assert tuning.run_worker(config, campaign, 0, count.objective, max_trials=TRIALS) == TRIALS
    return count


def test_cost_per_trial_does_not_grow_with_the_budget_and_stays_at_plain_optunas(pg_url, monkeypatch):
    monkeypatch.setenv("DRIFTLAB_DB_URL", pg_url)
    small, large = _driftlab(TRIALS, "small"), _driftlab(20 * TRIALS, "large")  # 30 vs 600 queued slots
    plain_study = optuna.create_study(storage=pg_url, study_name="plain", sampler=optuna.samplers.RandomSampler())
    with counting() as plain:
        plain_study.optimize(plain.objective, n_trials=TRIALS)

    assert large.rows <= 1.5 * small.rows, (small.rows, large.rows)  # the queued slots are not re-read per trial
    assert large.statements <= small.statements + 10
    assert small.statements <= plain.statements, (small.statements, plain.statements)
    assert small.stale_checks <= 2 and large.stale_checks <= 2  # once per heartbeat interval, not per trial
