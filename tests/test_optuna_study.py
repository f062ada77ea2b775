"""The ledger as Optuna's tools see it: a grid's trials carry the cells' axis values, so importances and
optuna-dashboard's views work on the study, which names its objective and says which sweep file it comes from."""

import io
import json
import warnings
import wsgiref.util
from collections import Counter

import optuna
import sweep_fakes
from test_sweep import FAST, call_counts, write_search, write_sweep

from ablations.ledger import _fixed_params
from ablations.sweep import Ledger, load_sweep, prepare, work

AXES = ("model.conv", "model.residual", "loss.l1_weight")


def run_in_process(tmp_path, sweep) -> Ledger:
    """Prepare the sweep's ledger and run all its cells in this process (one worker, no spawn: fast)."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs' / sweep.name / 'study.db'}", sweep.name, **FAST)
    prepare(sweep, ledger)
    assert work(sweep, ledger, sweep_fakes.count_calls) == len(sweep.cells)
    return ledger


def finished_trials(ledger: Ledger, sweep) -> tuple[optuna.Study, list[tuple[optuna.trial.FrozenTrial, object]]]:
    """The ledger's study and its complete trials, each with the sweep's cell it ran."""
    study = optuna.load_study(study_name=ledger.study_name, storage=ledger.url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return study, [(t, next(c for c in sweep.cells if c.id == t.user_attrs["cell_id"])) for t in trials]


def test_grid_trials_carry_their_axes_and_importances_see_them(tmp_path, calls):
    sweep = load_sweep(write_sweep(tmp_path))
    ledger = run_in_process(tmp_path, sweep)
    study, trials = finished_trials(ledger, sweep)
    assert len(trials) == 8
    for trial, cell in trials:
        assert trial.params == cell.axes and trial.user_attrs["seed"] == cell.seed == 0
        assert trial.distributions["model.conv"] == optuna.distributions.CategoricalDistribution(["3d", "2d"])
        assert trial.value == sweep_fakes.metric_of(cell)
    assert study.best_trial.params == {"model.conv": "3d", "model.residual": True, "loss.l1_weight": 0.5}
    importances = optuna.importance.get_param_importances(study)
    # fANOVA fits an unseeded forest to 8 points: which axis ranks first varies; that every axis is there does not.
    assert set(importances) == set(AXES) and abs(sum(importances.values()) - 1) < 1e-6
    assert study.metric_names == ["val/mse"]
    attrs = dict(study.user_attrs)
    note = attrs.pop("importances")
    assert attrs == {"sweep_file": sweep.path, "method": "grid", "metric": "val/mse", "goal": "minimize"}
    assert note.startswith(f"{len(sweep.cells)} trials. Parameter importances") and "mean little" in note

    prepare(load_sweep(write_sweep(tmp_path)), ledger)  # a rerun enqueues nothing and runs nothing
    assert len(study.get_trials()) == 8
    assert work(sweep, ledger, sweep_fakes.count_calls) == 0
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})


def test_a_grid_over_seeds_records_each_seed_as_an_attribute_never_a_parameter(tmp_path, calls):
    """A seed is a repeat of a cell, not a setting: Optuna's importances must never rank it."""
    sweep = load_sweep(write_sweep(tmp_path, **{"model.conv": None, "train.seed": {"values": [0, 1]}}))
    assert len(sweep.cells) == 8 and {cell.seed for cell in sweep.cells} == {0, 1}
    ledger = run_in_process(tmp_path, sweep)
    study, trials = finished_trials(ledger, sweep)
    assert len(trials) == 8
    for trial, cell in trials:
        assert "train.seed" not in trial.params and "train.seed" not in trial.distributions
        assert trial.params == {"model.residual": cell.axes["model.residual"], "loss.l1_weight": cell.axes[
            "loss.l1_weight"]}  # fmt: skip
        assert trial.user_attrs["seed"] == cell.params["train.seed"] == cell.seed
    assert sorted(trial.user_attrs["seed"] for trial, _ in trials) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert set(optuna.importance.get_param_importances(study)) == {"model.residual", "loss.l1_weight"}
    prepare(sweep, ledger)  # a rerun finds every cell, by its id, and enqueues nothing
    assert len(study.get_trials()) == 8


def test_a_search_records_its_constant_seed_as_an_attribute_never_a_parameter(tmp_path, calls):
    sweep = load_sweep(write_search(tmp_path, run_cap=3, **{"train.seed": {"value": 5}}))
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    prepare(sweep, ledger)
    assert work(sweep, ledger, sweep_fakes.quadratic) == 3
    study = optuna.load_study(study_name="grid", storage=ledger.url)
    trials = study.get_trials()
    assert len(trials) == 3
    for trial in trials:
        assert set(trial.params) == set(trial.distributions) == {"loss.l1_weight"}
        assert trial.user_attrs["seed"] == 5 and trial.user_attrs["cell_name"].endswith("-seed=5")


def test_list_and_none_values_become_categorical_choices_in_an_ablation(tmp_path, calls):
    # Hidden sizes are lists and train.threads may be null: Optuna's choices must be scalars, so lists go as text.
    changes = {"model.hidden": {"values": [[64, 64, 64, 64], [32, 32, 32, 32]]}, "train.threads": {"values": [None, 2]}}
    sweep = load_sweep(write_sweep(tmp_path, method="ablation", **changes))
    ledger = run_in_process(tmp_path, sweep)
    study = optuna.load_study(study_name=ledger.study_name, storage=ledger.url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == len(sweep.cells) == 6
    assert trials[0].params == {"model.conv": "3d", "model.residual": False, "loss.l1_weight": 0.0,
                                "model.hidden": "64,64,64,64", "train.threads": None}  # fmt: skip
    assert trials[0].distributions["model.hidden"].choices == ("64,64,64,64", "32,32,32,32")
    assert trials[0].distributions["train.threads"].choices == (None, 2)
    assert study.user_attrs["method"] == "ablation"
    assert set(optuna.importance.get_param_importances(study)) == {*AXES, "model.hidden", "train.threads"}


def test_waiting_cells_of_a_ledger_written_without_parameters_get_them(tmp_path, calls):
    sweep = load_sweep(write_sweep(tmp_path))
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    (tmp_path / "runs/grid").mkdir(parents=True)
    study = optuna.create_study(study_name="grid", storage=ledger.url)
    for cell in sweep.cells:  # as the ledger enqueued cells before they carried parameters
        study.enqueue_trial(_fixed_params(cell), user_attrs={"cell_id": cell.id, "cell_name": cell.name})
    prepare(sweep, ledger)
    assert len(study.get_trials()) == 8 and all(set(t.params) == set(AXES) for t in study.get_trials())
    assert work(sweep, ledger, sweep_fakes.count_calls) == 8
    assert set(optuna.importance.get_param_importances(study)) == set(AXES)


def test_a_value_added_to_an_axis_enqueues_its_cells_under_the_recorded_distribution(tmp_path, calls):
    # Optuna refuses a second distribution for a parameter name: the new value's cells go without that parameter.
    ledger = run_in_process(tmp_path, load_sweep(write_sweep(tmp_path)))
    edited = load_sweep(write_sweep(tmp_path, **{"loss.l1_weight": {"values": [0.0, 0.5, 1.0]}}))
    prepare(edited, ledger)
    study = optuna.load_study(study_name="grid", storage=ledger.url)
    new = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(new) == 4 and all(t.params.keys() == {"model.conv", "model.residual"} for t in new)
    assert work(edited, ledger, sweep_fakes.count_calls) == 4
    assert call_counts(calls) == Counter({cell.id: 1 for cell in edited.cells})


def test_a_search_study_is_described_too_and_its_first_trial_is_enqueued_as_before(tmp_path, calls):
    sweep = load_sweep(write_search(tmp_path))
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    prepare(sweep, ledger)
    prepare(sweep, ledger)
    study = optuna.load_study(study_name="grid", storage=ledger.url)
    assert study.user_attrs["method"] == "bayes" and study.metric_names == ["val/mse"]
    (first,) = study.get_trials()  # the release's l1 weight, sampled by nothing: its params come with the first ask
    assert first.system_attrs["fixed_params"] == {"loss.l1_weight": sweep.first["loss.l1_weight"]}


def get(app, path: str) -> dict:
    """GET ``path`` from a WSGI app, as optuna-dashboard's web page asks its server, and decode the JSON answer."""
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


def test_optuna_dashboard_shows_the_grids_parameters_objective_and_importances(tmp_path, calls):
    import optuna_dashboard

    sweep = load_sweep(write_sweep(tmp_path))
    ledger = run_in_process(tmp_path, sweep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its importance evaluator's warnings are not ours
        app = optuna_dashboard.wsgi(ledger.url)  # what `optuna-dashboard sqlite:///.../study.db` serves
        (study,) = get(app, "/api/studies")["study_summaries"]
        detail = get(app, f"/api/studies/{study['study_id']}")
        importances = get(app, f"/api/studies/{study['study_id']}/param_importances")["param_importances"]
    assert study["study_name"] == "grid"
    assert {a["key"]: a["value"] for a in detail["user_attrs"]}["sweep_file"] == sweep.path
    assert detail["objective_names"] == ["val/mse"]
    # The search space its slice, parallel-coordinate and importance views plot: the grid's three axes.
    assert {p["name"] for p in detail["intersection_search_space"]} == set(AXES)
    assert len(detail["trials"]) == 8 and all({p["name"] for p in t["params"]} == set(AXES) for t in detail["trials"])
    assert {p["name"] for p in importances[0]} == set(AXES)
