"""The tuned study's driver: per cell and arm, trials on the validation split (seeded search, ASHA), then finals.

For every cell, each arm (plain and GIST) runs `tune.trials` trials with the study's first seed on the validation
split (`train.select_on: val`, `train.evaluate_test: false`: a trial never reads the test split); an arm that
nothing in the space can change (a space of gist.* keys only, for the plain arm) runs no trial and keeps its cell's
config. When an arm's trials are settled its best trial (highest validation accuracy) is its choice, and the arm
trains that configuration over the study's seeds on the full training split (`data.val_size: 0`,
`train.select_on: last`, the test split evaluated): the final runs, whose paired verdict is the cell's. ASHA is
applied here, on the driver, as the trials' per-epoch validation accuracies reach the store (whatever the backend),
by stopping a trial through its run manager; the trial is recorded `pruned` (its run `stopped`), never continued.

Resuming never reruns a settled trial: proposals are the same (random search: drawn from the study's seed; Optuna:
told the settled trials first), ASHA's rungs are rebuilt from the stored curves, and the trials and final runs in
flight when the driver stopped continue from their training state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..runs.store import data_dir
from ..status import ACTIVE, RunStatus
from .loop import DriverLoop
from .ray_tune import run_tune_trials
from .spec import Cell, StudyError, StudySpec, _set_key
from .store import LOST, RETRYABLE, StudyStore
from .tune import (
    FINAL,
    FINAL_PROTOCOL,
    PRUNED,
    TRIAL,
    TRIAL_PROTOCOL,
    Asha,
    OptunaSearch,
    apply,
    best_trial,
    random_trials,
    search_seed,
)

logger = logging.getLogger(__name__)

DONE = (RunStatus.COMPLETED, RunStatus.DIVERGED)
CONTINUED = (RunStatus.INTERRUPTED, RunStatus.STOPPED)


def trial_config(spec: StudySpec, cell: Cell, arm: str, index: int, values: dict[str, Any]) -> RunConfig:
    """Trial `index` of an arm: the cell's config with the values tried, the arm's switch, the study's first seed
    and the validation protocol (`tune.TRIAL_PROTOCOL`; `data.val_size` = `tune.val_size` when the cell has
    none)."""
    settings = {**values, **TRIAL_PROTOCOL, "gist.enabled": arm == "gist", "train.seed": spec.seeds[0],
                "name": f"{spec.name}[{cell.label}]-{arm}-trial{index}"}
    if not cell.config.data.val_size:
        settings["data.val_size"] = spec.tune.val_size
    return apply(cell.config, settings, _set_key)


def final_config(spec: StudySpec, cell: Cell, arm: str, seed: int, values: dict[str, Any]) -> RunConfig:
    """A final run: the cell's config with the arm's chosen values, on the full training split (`FINAL_PROTOCOL`)."""
    return apply(cell.config, {**values, **FINAL_PROTOCOL, "gist.enabled": arm == "gist", "train.seed": seed,
                               "name": f"{spec.name}[{cell.label}]-{arm}-seed{seed}"}, _set_key)


@dataclass
class _Arm:
    """One arm of one cell: its trials (proposed, in flight, settled), its search, its ASHA and its choice."""

    cell: Cell
    arm: str
    n_trials: int
    proposals: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial -> values
    settled: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial -> {run_id, values, val_acc, outcome}
    inflight: set[int] = field(default_factory=set)
    next_trial: int = 0
    search: OptunaSearch | None = None
    asha: Asha | None = None
    choice: dict[str, Any] | None = None  # the chosen values once every trial settled
    finals_launched: set[int] = field(default_factory=set)  # seeds whose final run was submitted

    @property
    def trials_done(self) -> bool:
        return len(self.settled) >= self.n_trials

    def next_values(self, spec: StudySpec) -> dict[str, Any]:
        """The values of trial `next_trial` (proposed before, else from the search)."""
        index = self.next_trial
        if index not in self.proposals:
            self.proposals[index] = (self.search.ask() if self.search is not None
                                     else _random_proposals(spec, self.cell, self.arm)[index])
        return self.proposals[index]


def _random_proposals(spec: StudySpec, cell: Cell, arm: str) -> list[dict[str, Any]]:
    """The random search's trials of a cell: drawn from the whole space with a seed of the spec and the cell, so
    both arms are offered the same candidates (the plain arm keeps the keys it reads)."""
    seed = search_seed(spec.to_dict(), cell.key)
    space = spec.tune.arm_space(arm)
    return [{k: v for k, v in t.items() if k in space} for t in random_trials(spec.tune.space, spec.tune.trials, seed)]


class TunedDriver(DriverLoop):
    """One session of a tuned study: proposes and launches trials, applies ASHA, chooses, runs the final runs (the
    loop: `DriverLoop`)."""

    SETTLED = (*DONE, PRUNED)

    def __init__(self, store: StudyStore, study_id: str, spec: StudySpec, backend: Any,
                 progress: Callable[[int, int], None] | None, should_stop: Callable[[], bool] | None,
                 poll_seconds: float) -> None:
        super().__init__(store, study_id, spec, backend, progress, should_stop, poll_seconds)
        self.tune = spec.tune
        self.cells = spec.cells()
        self.concurrency = max(1, int(getattr(backend, "concurrency", 1)))
        self.inflight: dict[str, tuple] = {}  # run id -> ("trial", arm state, trial) | ("final", arm state, seed)
        self.attempt: dict[tuple, int] = {}
        self.retries_used: dict[tuple, int] = {}
        self.fed: dict[str, set[float]] = {}  # run id -> epochs whose validation accuracy ASHA has seen
        self.lock = threading.Lock()  # ASHA is fed from the poll and from the backend's evaluation hook
        self.pruned: dict[str, str] = {}  # run id -> why ASHA stopped it
        self.finals: dict[tuple[int, str, int], str] = {}  # (cell, arm, seed) -> status once settled
        self.to_launch: list[tuple[str, tuple]] = []  # runs to continue or retry: (run id, key)
        self.arms: list[_Arm] = []

    # ------------------------------------------------------------------------------------------------ setup
    def _restore(self) -> None:
        """Rebuild every arm's state from the store: settled trials, ASHA's rungs, the search's history, choices;
        queue the trials and final runs to continue or retry."""
        trials, finals = self.s.latest_trials(self.id), self.s.latest(self.id)
        for row in [*trials.values(), *finals.values()]:
            if row["status"] in ACTIVE:
                raise StudyError(f"study {self.id}: its run {row['run_id']} is still {row['status']} in another "
                                 "process; let it end (or stop it in `runs`/the app), then resume the study")
        curves = self.s.val_curves([r["run_id"] for r in trials.values() if r["run_id"]])
        for cell in self.cells:
            for arm in self.spec.arms:
                state = _Arm(cell, arm, self.tune.trials_of(arm))
                if self.tune.scheduler == "asha":
                    epochs = trial_config(self.spec, cell, arm, 0, {}).train.total_epochs
                    state.asha = Asha(self.tune.grace_period, self.tune.reduction_factor, epochs)
                history = []
                for index in range(state.n_trials):
                    row = trials.get((cell.index, arm, index))
                    if row is None:
                        break
                    key = (TRIAL, cell.index, arm, index)
                    self.attempt[key], self.retries_used[key] = row["attempt"], row["retries_used"]
                    state.proposals[index] = row["params"] or {}
                    state.next_trial = index + 1
                    curve = curves.get(row["run_id"], [])
                    for epoch, acc in curve:
                        if state.asha is not None:
                            state.asha.on_result(row["run_id"], epoch, acc)
                    self.fed[row["run_id"]] = {epoch for epoch, _ in curve}
                    if row["status"] in DONE or row["outcome"] == PRUNED or (
                            row["status"] == RunStatus.FAILED and row["retries_used"] > self.spec.retries):
                        state.settled[index] = self._trial_summary(index, row, curve)
                        history.append((state.proposals[index], state.settled[index]["val_acc"]))
                        self.settled += 1
                    else:  # interrupted, stopped by a user, or failed with retries left: continue it
                        self.to_launch.append((row["run_id"], (TRIAL, state, index)))
                if self.tune.search == "optuna" and state.n_trials:
                    seed = search_seed(self.spec.to_dict(), cell.key, arm)
                    state.search = OptunaSearch(self.tune.arm_space(arm), seed, history)
                if state.trials_done:
                    self._choose(state)
                    for seed in self.spec.seeds:
                        row = finals.get((cell.index, seed, arm))
                        if row is None or row["status"] is None:  # never submitted, or its run was deleted
                            continue
                        state.finals_launched.add(seed)
                        key = (FINAL, cell.index, arm, seed)
                        self.attempt[key], self.retries_used[key] = row["attempt"], row["retries_used"]
                        if row["status"] in DONE or (row["status"] == RunStatus.FAILED
                                                     and row["retries_used"] > self.spec.retries):
                            self.finals[(cell.index, arm, seed)] = row["status"]
                            self.settled += 1
                        else:
                            self.to_launch.append((row["run_id"], (FINAL, state, seed)))
                self.arms.append(state)

    def _trial_summary(self, index: int, row: dict[str, Any], curve: list[tuple[float, float]]) -> dict[str, Any]:
        return {"trial": index, "run_id": row["run_id"], "values": row["params"] or {},
                "val_acc": max((a for _, a in curve), default=None),
                "outcome": row["outcome"] or row["status"]}

    def _choose(self, state: _Arm) -> None:
        best = best_trial(list(state.settled.values()))
        state.choice = dict(best["values"]) if best is not None else ({} if state.n_trials == 0 else None)
        if state.n_trials and best is None:
            logger.error("study %s: no trial of %s [%s] has a validation accuracy; its final runs cannot be chosen",
                         self.id, state.arm, state.cell.label)

    # -------------------------------------------------------------------------------------------------- run
    def _start(self) -> bool:
        """Restore the arms from the store; on Ray Tune run each arm's trials; launch what is left. True when the
        study was stopped during a Tune arm (its unsettled trials wait for the next session)."""
        self.be.on_eval = self._on_eval
        self._restore()
        if getattr(self.be, "tune_engine", False) and self.tune.search == "random":
            for state in self.arms:  # Ray Tune runs each arm's trials (finals below, as Ray tasks)
                if not self._tune_arm(state):
                    return True
        for run_id, key in self.to_launch:
            self._relaunch(run_id, key)
        self._fill()
        return False

    def _after_poll(self) -> None:
        self._apply_asha()
        self._fill()

    def _fill(self) -> None:
        """Launch trials (cell by cell, plain then GIST) and final runs while fewer than `concurrency` run."""
        for state in self.arms:
            while len(self.inflight) < self.concurrency and state.next_trial < state.n_trials:
                if state.search is not None and state.inflight:
                    break  # TPE proposes from the trials that ended: one trial of an arm at a time
                self._launch_trial(state)
            if state.trials_done and state.choice is None and state.n_trials:
                self._choose(state)
            if len(self.inflight) >= self.concurrency:
                return
            if state.trials_done and state.choice is not None:
                for seed in self.spec.seeds:
                    if seed not in state.finals_launched:
                        state.finals_launched.add(seed)
                        self._launch_final(state, seed)

    def _tune_arm(self, state: _Arm) -> bool:
        """Run an arm's unsettled trials as one Ray Tune experiment (`ray_tune.run_tune_trials`), then settle them;
        False when the study was stopped meanwhile (its interrupted trials are continued by `study resume`)."""
        continuing = [(rid, k) for rid, k in self.to_launch if k[0] == TRIAL and k[1] is state]
        if not continuing and state.next_trial >= state.n_trials:
            return True
        self.to_launch = [x for x in self.to_launch if not (x[1][0] == TRIAL and x[1][1] is state)]
        mgr, plan, ids = self.be.manager, {}, {}
        for run_id, key in continuing:
            mgr.resume(run_id)
            self._link(key, run_id)
            ids[key[2]] = run_id
        while state.next_trial < state.n_trials:
            index = state.next_trial
            values = state.next_values(self.spec)
            state.next_trial += 1
            cfg = trial_config(self.spec, state.cell, state.arm, index, values)
            run_id = mgr.submit(cfg, name=cfg.name)
            self._link((TRIAL, state, index), run_id)
            ids[index] = run_id
        for index, run_id in ids.items():
            plan[index] = (run_id, mgr.store.run_config(run_id), str(mgr.run_dir(run_id)))

        def on_retry(run_id: str) -> None:  # Tune retried a trial whose worker died: a new attempt of its run
            key = self.inflight[run_id]
            self.s.set_outcome(self.id, run_id, LOST, "its Ray worker died; Ray Tune retried the trial")
            mgr.resume(run_id)
            self._link(key, run_id)

        ended: set[str] = set()

        def on_end(run_id: str) -> None:  # the progress moves as trials end, not only when the arm's experiment does
            ended.add(run_id)
            if self.progress is not None:
                self.progress(self.settled + len(ended), self.spec.planned)

        epochs = trial_config(self.spec, state.cell, state.arm, 0, {}).train.total_epochs
        root = Path(mgr.root) if mgr.root is not None else data_dir()
        results = run_tune_trials(self.be, plan, name=f"{self.id}-cell{state.cell.index}-{state.arm}",
                                  storage=root / "tune", epochs=epochs, scheduler=self.tune.scheduler,
                                  grace_period=self.tune.grace_period, reduction_factor=self.tune.reduction_factor,
                                  retries=self.spec.retries, on_retry=on_retry, should_stop=self.should_stop,
                                  on_end=on_end)
        curves = self.s.val_curves(list(ids.values()))
        for index, (outcome, error) in results.items():
            run_id = ids[index]
            self.inflight.pop(run_id, None)
            state.inflight.discard(index)
            self.s.set_outcome(self.id, run_id, outcome, error)
            if outcome in CONTINUED:  # the study stopped before it ended
                continue
            row = {"run_id": run_id, "params": state.proposals[index], "outcome": outcome, "status": outcome}
            state.settled[index] = self._trial_summary(index, row, curves.get(run_id, []))
            self.settled += 1
        self._report()
        if state.trials_done:
            self._choose(state)
        return all(outcome not in CONTINUED for outcome, _ in results.values())

    def _launch_trial(self, state: _Arm) -> None:
        index = state.next_trial
        values = state.next_values(self.spec)
        state.next_trial += 1
        cfg = trial_config(self.spec, state.cell, state.arm, index, values)
        run_id = self.be.manager.submit(cfg, name=cfg.name)
        self._link((TRIAL, state, index), run_id)
        self.be.launch(run_id, False)

    def _launch_final(self, state: _Arm, seed: int) -> None:
        cfg = final_config(self.spec, state.cell, state.arm, seed, state.choice)
        run_id = self.be.manager.submit(cfg, name=cfg.name)
        self._link((FINAL, state, seed), run_id)
        self.be.launch(run_id, False)

    def _relaunch(self, run_id: str, key: tuple) -> None:
        self.be.manager.resume(run_id)
        self._link(key, run_id)
        self.be.launch(run_id, True)

    def _akey(self, key: tuple) -> tuple:
        role, state, n = key
        return role, state.cell.index, state.arm, n

    def _link(self, key: tuple, run_id: str) -> None:
        role, state, n = key
        akey = self._akey(key)
        self.attempt[akey] = self.attempt.get(akey, 0) + 1
        self.retries_used.setdefault(akey, 0)
        cell = state.cell
        if role == TRIAL:
            state.inflight.add(n)
            self.s.link(self.id, cell.index, cell.key, self.spec.seeds[0], state.arm, self.attempt[akey], run_id,
                        self.be.name, role=TRIAL, trial=n, params=state.proposals[n])
        else:
            self.s.link(self.id, cell.index, cell.key, n, state.arm, self.attempt[akey], run_id, self.be.name,
                        role=FINAL, params=state.choice)
        self.inflight[run_id] = key

    # --------------------------------------------------------------------------------------------- progress
    def _on_eval(self, run_id: str, metrics: dict[str, Any]) -> None:
        """The backend's hook: an evaluation of a run just ended (on its training thread for the local backend, so
        ASHA's stop comes before the trial's next step)."""
        if metrics.get("split") == "val" and metrics.get("acc_cls") is not None:
            self._feed(run_id, float(metrics.get("epoch") or 0.0), float(metrics["acc_cls"]))

    def _apply_asha(self) -> None:
        """Feed the validation accuracies that reached the store and were not seen yet (a backend without the
        hook, e.g. a shared run manager) to ASHA."""
        trials = [rid for rid, k in self.inflight.items() if k[0] == TRIAL and k[1].asha is not None
                  and rid not in self.pruned]
        for run_id, curve in self.s.val_curves(trials).items():
            for epoch, acc in curve:
                self._feed(run_id, epoch, acc)

    def _feed(self, run_id: str, epoch: float, acc: float) -> None:
        """One validation accuracy of a trial in flight to its arm's ASHA (once per epoch); stop the trial when
        ASHA says so (recorded `pruned` when its run ends)."""
        with self.lock:
            key = self.inflight.get(run_id)
            if key is None or key[0] != TRIAL or key[1].asha is None or run_id in self.pruned:
                return
            seen = self.fed.setdefault(run_id, set())
            if epoch in seen:
                return
            seen.add(epoch)
            if not key[1].asha.on_result(run_id, epoch, acc):
                return
            self.pruned[run_id] = (f"stopped by ASHA after epoch {epoch:g}: validation accuracy {acc:.4f} below "
                                   f"the top 1/{self.tune.reduction_factor} of the trials at that rung")
        logger.info("study %s: trial %s %s", self.id, run_id, self.pruned[run_id])
        self.be.manager.stop(run_id)

    def _collect(self, finished: list[tuple[str, str, str | None]], retry: bool = True) -> None:
        for run_id, outcome, error in finished:
            key = self.inflight.pop(run_id, None)
            if key is None:
                continue
            role, state, n = key
            akey = self._akey(key)
            if run_id in self.pruned and outcome == RunStatus.STOPPED:
                outcome, error = PRUNED, self.pruned[run_id]
            self.s.set_outcome(self.id, run_id, outcome, error)
            self.retries_used[akey] += outcome in RETRYABLE
            if retry and outcome in RETRYABLE and self.retries_used[akey] <= self.spec.retries:
                logger.warning("study %s: run %s %s; retrying it (retry %d of %d)", self.id, run_id, outcome,
                               self.retries_used[akey], self.spec.retries)
                self._relaunch(run_id, key)
                continue
            if outcome in CONTINUED:  # continued by the next driver session
                if role == TRIAL:
                    state.inflight.discard(n)
                continue
            self.settled += 1
            if role == TRIAL:
                state.inflight.discard(n)
                curve = self.s.val_curves([run_id])[run_id]
                row = {"run_id": run_id, "params": state.proposals[n], "outcome": outcome, "status": outcome}
                state.settled[n] = self._trial_summary(n, row, curve)
                if state.search is not None:
                    state.search.tell(state.proposals[n], state.settled[n]["val_acc"])
            else:
                self.finals[(state.cell.index, state.arm, n)] = outcome
        if finished:
            self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.settled, self.spec.planned)


__all__ = ["TunedDriver", "final_config", "trial_config"]
