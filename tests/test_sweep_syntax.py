"""W&B's sweep syntax as a fluent W&B user writes it: each form parses to the parameter it means, each distribution
with no Optuna equivalent is refused by name with the reason, nested parameters become dotted keys, and a search
samples every mapped distribution within its bounds (``search_space.suggest`` on a real in-memory Optuna study, no
training)."""

import math
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml

from ablations.parameters import DISTRIBUTIONS, REFUSED_DISTRIBUTIONS, Parameter
from ablations.search_space import sampler, suggest
from ablations.sweep import SweepError, load_sweep

ROOT = Path(__file__).resolve().parents[1]
BASELINE = str(ROOT / "ablations/moving_mnist/e3d_baseline.yaml")


def write_file(tmp_path: Path, parameters: dict, method: str = "bayes", **top) -> Path:
    """A sweep file of the baseline at the demo profile, its runs under tmp_path, with these parameters added and
    these top-level keys; a search gets run_cap 4 unless told."""
    spec = {
        "name": "syntax",
        "method": method,
        "parameters": {
            "variant": {"value": BASELINE},
            "profile": {"value": "demo"},
            "train.seed": {"value": 0},
            "train.runs_dir": {"value": str(tmp_path / "runs")},
            "tracking.wandb": {"value": "disabled"},
            **parameters,
        },
        **top,
    }
    if method in ("bayes", "random"):
        spec.setdefault("run_cap", 4)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def parsed(tmp_path: Path, name: str, spec: dict, method: str = "bayes") -> Parameter:
    sweep = load_sweep(write_file(tmp_path, {name: spec}, method))
    return next(p for p in sweep.parameters if p.name == name)


def refusal(tmp_path: Path, parameters: dict, method: str = "bayes", **top) -> str:
    path = write_file(tmp_path, parameters, method, **top)
    with pytest.raises(SweepError) as error:
        load_sweep(path)
    assert str(path) in str(error.value)  # every message names the file
    return str(error.value)


# ---------------------------------------------------------------------------------------------------------------------
# Each form W&B accepts, parsed


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        # {min, max}: W&B infers int_uniform from two integers, uniform otherwise
        ("train.batch_size", {"min": 2, "max": 8}, ("distribution", "int_uniform", 2, 8, None)),
        ("loss.l1_weight", {"min": 0, "max": 1.0}, ("distribution", "uniform", 0, 1.0, None)),
        ("loss.l1_weight", {"distribution": "uniform", "min": 0, "max": 1}, ("distribution", "uniform", 0, 1, None)),
        ("loss.l1_weight", {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25},
         ("distribution", "q_uniform", 0, 1, 0.25)),
        ("train.batch_size", {"distribution": "q_uniform", "min": 2, "max": 8},  # q defaults to 1
         ("distribution", "q_uniform", 2, 8, 1)),
        ("train.lr", {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
         ("distribution", "log_uniform_values", 1e-4, 1e-2, None)),
        ("train.lr", {"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 1e-2},
         ("distribution", "inv_log_uniform_values", 1e-4, 1e-2, None)),
        ("train.lr", {"distribution": "q_log_uniform_values", "min": 1e-4, "max": 1e-2, "q": 1e-4},
         ("distribution", "q_log_uniform_values", 1e-4, 1e-2, 1e-4)),
        # natural-log bounds, kept as the values they bound: exp(min), exp(max); inverse: exp(-max), exp(-min)
        ("train.lr", {"distribution": "log_uniform", "min": math.log(1e-4), "max": math.log(1e-2)},
         ("distribution", "log_uniform", 1e-4, 1e-2, None)),
        ("train.lr", {"distribution": "inv_log_uniform", "min": -math.log(1e-2), "max": -math.log(1e-4)},
         ("distribution", "inv_log_uniform", 1e-4, 1e-2, None)),
        ("train.log_every", {"distribution": "q_log_uniform", "min": 0, "max": 3, "q": 2},
         ("distribution", "q_log_uniform", 1, math.exp(3), 2)),
    ],
)  # fmt: skip
def test_each_ranged_form_parses_to_its_distribution(tmp_path, name, spec, expected):
    p = parsed(tmp_path, name, spec)
    kind, distribution, low, high, q = expected
    assert (p.kind, p.distribution, p.q) == (kind, distribution, q)
    assert p.low == pytest.approx(low) and p.high == pytest.approx(high)
    if distribution == "int_uniform":
        assert type(p.low) is int and type(p.high) is int


def test_constants_and_categoricals_in_every_spelling(tmp_path):
    sweep = load_sweep(write_file(tmp_path, {
        "model.conv": {"value": "2d", "distribution": "constant"},
        "model.residual": {"values": [False, True], "distribution": "categorical"},
        "loss.l1_weight": {"values": [0.0, 0.5]},
    }, "grid"))  # fmt: skip
    named = {p.name: p for p in sweep.parameters}
    assert (named["model.conv"].kind, named["model.conv"].values) == ("value", ("2d",))
    assert (named["model.residual"].kind, named["model.residual"].values) == ("values", (False, True))
    assert (named["loss.l1_weight"].kind, named["loss.l1_weight"].values) == ("values", (0.0, 0.5))
    assert len(sweep.cells) == 4 and {c.config.model.conv for c in sweep.cells} == {"2d"}


def test_a_grid_expands_int_uniform_and_q_uniform_as_wandbs_grid_does(tmp_path):
    ints = load_sweep(write_file(tmp_path, {"train.batch_size": {"min": 2, "max": 4}}, "grid"))
    assert [c.params["train.batch_size"] for c in ints.cells] == [2, 3, 4]  # max included: range(min, max + 1)
    steps = load_sweep(write_file(tmp_path, {"loss.l1_weight": {"distribution": "q_uniform", "min": 0, "max": 1,
                                                                "q": 0.1}}, "grid"))  # fmt: skip
    # numpy's arange(min, max, q), as W&B's grid builds it: max left out, no binary noise (0.30000000000000004)
    assert [c.params["loss.l1_weight"] for c in steps.cells] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    ablation = load_sweep(write_file(tmp_path, {"train.batch_size": {"min": 2, "max": 4}}, "ablation"))
    assert [c.params["train.batch_size"] for c in ablation.cells] == [2, 3, 4]  # the base is min
    message = refusal(tmp_path, {"train.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}, "grid")
    assert "parameters.train.lr: a grid needs value or values" in message and "log_uniform_values" in message


# ---------------------------------------------------------------------------------------------------------------------
# Refused, by name and with the reason


@pytest.mark.parametrize(
    ("spec", "name", "reason"),
    [
        ({"distribution": "normal", "mu": 1e-3, "sigma": 1e-4}, "distribution normal", "Optuna has no normal"),
        ({"distribution": "q_normal", "mu": 1e-3, "sigma": 1e-4, "q": 1e-4}, "distribution q_normal",
         "Optuna has no normal"),
        ({"distribution": "log_normal", "mu": -7, "sigma": 1}, "distribution log_normal", "Optuna has no log-normal"),
        ({"distribution": "q_log_normal", "mu": -7, "sigma": 1, "q": 1e-4}, "distribution q_log_normal",
         "Optuna has no log-normal"),
        ({"distribution": "beta", "a": 2, "b": 5}, "distribution beta", "Optuna has no beta distribution"),
        ({"distribution": "q_beta", "a": 2, "b": 5, "q": 0.1}, "distribution q_beta", "Optuna has no beta"),
        ({"distribution": "categorical_w_probabilities", "values": [1e-3, 1e-4], "probabilities": [0.9, 0.1]},
         "distribution categorical_w_probabilities", "cannot weight categories"),
        # W&B infers categorical_w_probabilities from values with probabilities: refused the same, never ignored
        ({"values": [1e-3, 1e-4], "probabilities": [0.9, 0.1]},
         "distribution categorical_w_probabilities (inferred from the fields)", "the probabilities would be ignored"),
    ],
)  # fmt: skip
def test_distributions_without_an_optuna_equivalent_are_refused_with_the_reason(tmp_path, spec, name, reason):
    message = refusal(tmp_path, {"train.lr": spec})
    assert f"parameters.train.lr: {name} is W&B's, but" in message and reason in message
    assert "distribution must be one of " + ", ".join(DISTRIBUTIONS) in message  # what to write instead
    assert set(REFUSED_DISTRIBUTIONS) | set(DISTRIBUTIONS) >= {spec.get("distribution", "categorical")}


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ({"name": "val/ssim", "target": "high"}, "metric.target must be a finite number, got 'high'"),
        ({"name": "val/mse", "impute": "worst"}, "metric.impute ('worst') is W&B's, but Optuna leaves a failed"),
        ({"name": "val/mse", "impute_while_running": "best"}, "metric.impute_while_running ('best') is W&B's"),
        ({"name": "val/mse", "aim": "low"}, "metric: unknown key 'aim' (allowed: name, goal, target)"),
        ({"name": "val/loss"}, "metric.name must be one of val/mse, val/mae, val/psnr, val/ssim, test/mse"),
    ],
)  # fmt: skip
def test_metric_fields_the_ledger_cannot_honour_are_refused_not_ignored(tmp_path, metric, expected):
    assert expected in refusal(tmp_path, {"model.residual": {"values": [False, True]}}, "grid", metric=metric)


@pytest.mark.parametrize("name", ["val/mse", "val/mae", "val/psnr", "val/ssim", "test/ssim"])
def test_every_metric_the_trainer_logs_at_validation_can_rank_a_sweep(tmp_path, name):
    goal = "maximize" if name.endswith(("psnr", "ssim")) else "minimize"
    path = write_file(
        tmp_path, {"model.residual": {"values": [False, True]}}, "grid", metric={"name": name, "goal": goal}
    )
    sweep = load_sweep(path)
    assert (sweep.metric, sweep.goal) == (name, goal)


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"train.batch_size": {"min": 2, "max": 8, "q": 2}},
         "parameters.train.batch_size: 'q' does not go with distribution int_uniform (inferred from the fields)"),
        ({"train.lr": {"distribution": "uniform", "min": 1e-4, "max": 1e-2, "mu": 0}},
         "parameters.train.lr: 'mu' does not go with distribution uniform"),
        ({"train.lr": {"distribution": "q_log_uniform_values", "min": 1e-4, "max": 1e-2, "q": 0}},
         "needs q as a positive number, got 0"),
        ({"loss.l1_weight": {"distribution": "q_uniform", "min": 0.1, "max": 0.2, "q": 0.3}},
         "has no multiple of q (0.3) between 0.1 and 0.2"),
        ({"train.lr": {"distribution": "log_uniform", "min": 1e-4, "max": 800}}, "takes natural-log bounds"),
        ({"train.lr": {"distribution": "inv_log_uniform_values", "min": 0, "max": 1e-2}}, "needs min > 0"),
        ({"train.lr": {"distribution": "gaussian", "min": 0, "max": 1}}, "distribution must be one of constant,"),
        ({"train.lr": {"q": 1e-4}}, "give exactly one of value, values, min and max, or a distribution"),
        ({"model.residual": {"distribution": "categorical", "values": [False, True], "probabilities": [0.5, 0.5]}},
         "'probabilities' does not go with values"),
        ({"train.lr": {"distribution": "constant"}}, "distribution constant needs value"),
        ({"train.lr": {"distribution": "uniform", "min": 1e-4, "max": math.inf}}, "needs max as a number, got inf"),
    ],
)  # fmt: skip
def test_malformed_wandb_forms_name_the_key(tmp_path, parameters, expected):
    assert expected in refusal(tmp_path, parameters)


# ---------------------------------------------------------------------------------------------------------------------
# Nested parameters


def test_nested_parameters_become_dotted_keys(tmp_path):
    nested = load_sweep(write_file(tmp_path / "nested", {
        "model": {"parameters": {"conv": {"value": "3d"}, "residual": {"values": [False, True]}}},
        "loss": {"parameters": {"l1_weight": {"values": [0.0, 0.5]}}},
    }, "grid"))  # fmt: skip
    flat = load_sweep(write_file(tmp_path / "flat", {
        "model.conv": {"value": "3d"}, "model.residual": {"values": [False, True]},
        "loss.l1_weight": {"values": [0.0, 0.5]},
    }, "grid"))  # fmt: skip
    assert [p.name for p in nested.parameters if p.name.startswith(("model", "loss"))] == [
        "model.conv", "model.residual", "loss.l1_weight"]  # fmt: skip
    assert [c.axes for c in nested.cells] == [c.axes for c in flat.cells]
    assert [c.params.keys() for c in nested.cells] == [c.params.keys() for c in flat.cells]
    assert [c.name for c in nested.cells][-1] == "residual=true-l1_weight=0.5-seed=0"
    cfg = nested.cells[-1].config
    assert (cfg.model.conv, cfg.model.residual, cfg.loss.l1_weight) == ("3d", True, 0.5)


def test_nested_parameters_are_checked_like_flat_ones(tmp_path):
    deep = {"model": {"parameters": {"residuall": {"values": [False, True]}}}}
    assert "parameters.model.residuall: unknown parameter 'model.residuall' (did you mean 'model.residual'?)" in (
        refusal(tmp_path, deep, "grid"))  # fmt: skip
    twice = {"model": {"parameters": {"residual": {"value": True}}}, "model.residual": {"values": [False, True]}}
    assert "parameters 'model.residual' and 'model.residual' both set model.residual" in refusal(
        tmp_path, twice, "grid"
    )
    extra = {"model": {"parameters": {"residual": {"value": True}}, "value": 1}}
    assert "parameters.model: nested parameters take no other field, got 'value'" in refusal(tmp_path, extra, "grid")
    empty = {"model": {"parameters": {}}}
    assert "parameters.model.parameters must be a non-empty mapping" in refusal(tmp_path, empty, "grid")
    searched = {"train": {"parameters": {"lr": {"distribution": "q_log_uniform_values", "min": 1e-4, "max": 1e-2,
                                                "q": 1e-4}}}}  # fmt: skip
    (lr,) = [p for p in load_sweep(write_file(tmp_path, searched)).parameters if p.name == "train.lr"]
    assert (lr.kind, lr.distribution, lr.q) == ("distribution", "q_log_uniform_values", 1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# A tiny search: every mapped distribution, sampled by the ledger on a real Optuna study

SEARCHED = {
    "train.batch_size": {"min": 2, "max": 8},  # int_uniform, inferred
    "train.beta1": {"distribution": "uniform", "min": 0.5, "max": 0.99},
    "loss.l1_weight": {"distribution": "q_uniform", "min": 0.05, "max": 0.95, "q": 0.1},  # multiples 0.1 ... 0.9
    "train.eval_every": {"distribution": "q_uniform", "min": 1, "max": 9, "q": 2},  # integer q: 2, 4, 6, 8
    "train.lr": {"distribution": "q_log_uniform_values", "min": 1e-4, "max": 1e-2, "q": 5e-4},  # 5e-4 ... 1e-2
    "train.log_every": {"distribution": "q_log_uniform", "min": 0, "max": 3},  # q 1: integers 1 ... 20
    "model.forget_bias": {"distribution": "log_uniform", "min": -1, "max": 1},  # [1/e, e]
    "train.beta2": {"distribution": "inv_log_uniform_values", "min": 0.9, "max": 0.999},
    "train.lr_min": {"distribution": "inv_log_uniform", "min": 9.2, "max": 13.8},  # [exp(-13.8), exp(-9.2)]
    "train.checkpoint_every": {"distribution": "int_uniform", "min": 1, "max": 3},
    "model.residual": {"values": [False, True]},
    "model.conv": {"distribution": "categorical", "values": ["3d", "2d"]},
}


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    return load_sweep(write_file(tmp_path_factory.mktemp("search"), SEARCHED, run_cap=40))


def ask(study, sweep) -> tuple[dict, dict]:
    trial = study.ask()
    values = suggest(trial, sweep)
    study.tell(trial, 0.0)
    return values, trial.params


def test_every_mapped_distribution_samples_within_its_bounds_under_random_and_tpe(search):
    # TPE samples at random for its first 10 trials (run_cap 40 // 4), then from its model: both are exercised.
    study = optuna.create_study(sampler=sampler(search, worker=0))
    named = {p.name: p for p in search.parameters}
    seen = {name: [] for name in SEARCHED}
    for _ in range(30):
        values, recorded = ask(study, search)
        assert set(values) == set(SEARCHED)
        for name, value in values.items():
            seen[name].append(value)
            p = named[name]
            if p.kind == "values":
                assert value in p.values
                continue
            assert p.holds(value), (name, value)
            lowest, highest = p.support
            assert lowest <= value <= highest
            if p.distribution in ("q_log_uniform", "q_log_uniform_values"):
                # Optuna records the log-uniform float; the cell gets it rounded to q's multiple
                assert p.low <= recorded[name] <= p.high and value == p.quantize(recorded[name])
            else:
                assert value == pytest.approx(recorded[name])
    assert all(isinstance(v, int) for name in ("train.batch_size", "train.eval_every", "train.log_every",
                                               "train.checkpoint_every") for v in seen[name])  # fmt: skip
    assert all(isinstance(v, float) for name in ("train.beta1", "loss.l1_weight", "train.lr") for v in seen[name])
    assert set(seen["train.eval_every"]) <= {2, 4, 6, 8} and set(seen["train.checkpoint_every"]) == {1, 2, 3}
    assert set(seen["loss.l1_weight"]) <= {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}  # exact: no binary noise
    assert all(round(v / 5e-4) * 5e-4 == pytest.approx(v) for v in seen["train.lr"])
    assert (named["train.lr_min"].low, named["train.lr_min"].high) == pytest.approx((math.exp(-13.8), math.exp(-9.2)))


def test_log_scales_are_log_uniform_and_int_uniform_reaches_both_ends(search):
    # Random sampling, 400 trials: half of a log-uniform draw lies below the geometric mean of its bounds (a uniform
    # draw on [1/e, e] would put only 27% below 1).
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = [ask(study, search)[0] for _ in range(400)]
    below = {name: sum(d[name] < math.sqrt(p.low * p.high) for d in draws) / len(draws)
             for name, p in ((p.name, p) for p in search.parameters if p.kind == "distribution")
             if p.distribution in ("log_uniform", "inv_log_uniform", "inv_log_uniform_values")}  # fmt: skip
    assert all(0.42 < share < 0.58 for share in below.values()), below
    counts = Counter(d["train.batch_size"] for d in draws)
    assert set(counts) == set(range(2, 9)) and min(counts.values()) > 30  # about 57 each


def test_the_first_trial_is_the_resolved_config_where_the_distribution_can_give_it(search):
    # The demo profile's values: batch size 4, lr 2e-3 (a multiple of q = 5e-4), beta1 0.95, forget bias 1.0,
    # log_every 10; its l1 weight 0.0 is no multiple of 0.1 within [0.05, 0.95], so that one is sampled.
    assert search.first == {"train.batch_size": 4, "train.lr": 0.002, "train.beta1": 0.95, "model.forget_bias": 1.0,
                            "train.log_every": 10, "model.residual": False, "model.conv": "3d"}  # fmt: skip
    study = optuna.create_study(sampler=sampler(search, worker=0))
    study.enqueue_trial(search.first)
    values, _ = ask(study, search)
    assert {name: values[name] for name in search.first} == search.first
    assert type(values["train.log_every"]) is int


def test_a_sweep_file_that_expands_through_aliases_is_refused_before_any_cell_is_built(tmp_path):
    """A "billion laughs" of a few lines, as W&B's values of an axis: refused at once, naming the file."""
    lines = ["name: bomb", "method: grid", "laughs:", "  a0: &a0 [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]"]
    lines += [f"  a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]" for k in range(1, 9)]
    lines += ["parameters:", "  variant: {value: x.yaml}", "  loss.l1_weight: {values: *a8}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SweepError, match=r"bomb\.yaml: not valid YAML \(its aliases expand it past 100,000 values"):
        load_sweep(path)
