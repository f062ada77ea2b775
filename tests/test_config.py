import dataclasses

import pytest
import yaml

from core import config as C
from core.axes import axis_values
from core.config import ConfigError, config_hash, hashed_fields, load, name_problem, parse_overrides


def _write(path, data):
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return path


def test_defaults_are_the_release():
    cfg = C.load()
    assert cfg.model.hidden == (64, 64, 64, 64) and cfg.model.conv == "3d" and cfg.model.filter_size == 5
    assert (cfg.train.lr, cfg.train.beta1, cfg.train.beta2, cfg.train.batch_size) == (1e-3, 0.95, 0.9995, 4)
    assert cfg.loss.l1_weight == pytest.approx(2 / 3)


def test_extends_chain_profiles_and_overrides_merge_in_order(tmp_path):
    _write(tmp_path / "base.yaml", {
        "model": {"hidden": [32, 32], "patch_size": 4},
        "train": {"steps": 100},
        "profiles": {"demo": {"train": {"steps": 10, "batch_size": 2}}, "paper": {"train": {"steps": 80000}}},
    })  # fmt: skip
    _write(tmp_path / "variant.yaml", {
        "extends": "base.yaml", "variant": "res", "model": {"residual": True}, "train": {"steps": 200},
        "profiles": {"demo": {"train": {"batch_size": 3}}},
    })  # fmt: skip
    cfg = C.load(tmp_path / "variant.yaml")
    assert cfg.variant == "res" and cfg.model.hidden == (32, 32) and cfg.model.residual and cfg.train.steps == 200
    demo = C.load(tmp_path / "variant.yaml", profile="demo")
    # Each file's profile refines that file; the extending file (body and profile) is more specific than both.
    assert demo.train.steps == 200 and demo.train.batch_size == 3 and demo.model.hidden == (32, 32)
    assert C.load(tmp_path / "base.yaml", profile="demo").train.steps == 10
    cli = C.load(tmp_path / "variant.yaml", ["--train.steps=7", "--model.residual", "false"], profile="demo")
    assert cli.train.steps == 7 and cli.model.residual is False
    assert C.profiles_of(tmp_path / "variant.yaml") == ["demo", "paper"]


def test_release_flag_names_are_aliases():
    cfg = C.load(None, ["--num_hidden", "64,64,64,64", "--filter_size", "3", "--patch_size", "4", "--img_width", "64",
                        "--img_channel", "1", "--input_length", "10", "--total_length", "20", "--layer_norm", "0",
                        "--lr", "0.0001", "--batch_size", "8", "--max_iterations", "5000", "--sampling_stop_iter",
                        "100", "--sampling_start_value", "0.5", "--sampling_delta_per_iter", "0.001",
                        "--display_interval", "7", "--test_interval", "9", "--snapshot_interval", "11",
                        "--pretrained_model", "runs/x"])  # fmt: skip
    assert cfg.model.hidden == (64, 64, 64, 64) and cfg.model.filter_size == 3 and cfg.model.layer_norm is False
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.steps) == (1e-4, 8, 5000)
    assert (cfg.train.sampling_stop, cfg.train.sampling_start, cfg.train.sampling_rate) == (100, 0.5, 0.001)
    assert (cfg.train.log_every, cfg.train.eval_every, cfg.train.checkpoint_every) == (7, 9, 11)
    assert cfg.train.init_from == "runs/x"
    assert C.load(None, ["--sampling_changing_rate=0.01"]).train.sampling_rate == 0.01


def test_unknown_key_in_file_names_file_key_and_closest(tmp_path):
    path = _write(tmp_path / "bad.yaml", {"model": {"residul": True}})
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'model\.residul'; did you mean 'model\.residual'"):
        C.load(path)
    path = _write(tmp_path / "bad2.yaml", {"modle": {"residual": True}})
    with pytest.raises(ConfigError, match=r"bad2\.yaml: unknown key 'modle'"):
        C.load(path)


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError, match=r"command line: unknown key 'train\.stpes'; did you mean 'train\.steps'"):
        C.load(None, ["--train.stpes=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--train.steps=1.5", r"train\.steps must be an integer, got '1\.5'"),
        ("--model.residual=maybe", r"model\.residual must be true or false"),
        ("--model.conv=4d", r"model\.conv must be one of '3d', '2d'"),
        ("--model.hidden=64,x", r"model\.hidden\[1\] must be an integer"),
        ("--train.lr=fast", r"train\.lr must be a number"),
    ],
)
def test_type_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        C.load(None, [override])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("--loss.l1_weight=1.5", "loss.l1_weight"),
        ("--data.total_frames=10", "data.total_frames"),
        ("--model.patch_size=5", "model.patch_size"),
        ("--model.filter_size=4", "model.filter_size"),
        ("--train.lr=0", "train.lr"),
        ("--train.lr=inf", "train.lr"),
        ("--train.lr=nan", "train.lr"),
        ("--train.lr_min=0.5", "train.lr_min"),
        ("--train.lr_warmup=90000", "train.lr_warmup"),
        ("--train.lr_schedule=linear", "train.lr_schedule"),
        ("--train.sampling_start=2", "train.sampling_start"),
    ],
)
def test_ranges_are_checked(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        C.load(None, [override])


def test_residual_needs_equal_sizes():
    with pytest.raises(ConfigError, match="model.residual needs equal hidden sizes"):
        C.load(None, ["--model.residual=true", "--model.hidden=32,64,32"])


def test_int_is_a_fine_float_and_null_clears_optional(tmp_path):
    path = _write(tmp_path / "v.yaml", {"loss": {"l1_weight": 1}, "train": {"init_from": None}})
    cfg = C.load(path, ["--train.init_from=none"])
    assert cfg.loss.l1_weight == 1.0 and isinstance(cfg.loss.l1_weight, float) and cfg.train.init_from is None


def test_unknown_profile_lists_the_available(tmp_path):
    path = _write(tmp_path / "v.yaml", {"profiles": {"demo": {}}})
    with pytest.raises(ConfigError, match=r"no profile 'papr'; available: demo"):
        C.load(path, profile="papr")


def test_bad_yaml_and_cycles(tmp_path):
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        C.load(_write(tmp_path / "broken.yaml", "model: [unclosed"))
    _write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    _write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match="extends itself"):
        C.load(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such config file"):
        C.load(tmp_path / "missing.yaml")


def test_round_trip_and_hash():
    cfg = C.load(None, ["--model.residual=true", "--model.hidden=16,16", "--tracking.tags=a,b"])
    again = C.from_dict(yaml.safe_load(C.to_yaml(cfg)))
    assert again == cfg
    assert C.config_hash(again) == C.config_hash(cfg)
    # What a run computes changes the hash; where it is recorded does not.
    assert C.config_hash(C.load(None, ["--model.residual=true", "--model.hidden=16,16", "--train.runs_dir=x"])) == (
        C.config_hash(cfg)
    )
    assert C.config_hash(C.load(None, ["--model.hidden=16,16"])) != C.config_hash(cfg)


def test_precision_and_compile_options_and_configs_written_before_them():
    cfg = C.load(None, ["--train.precision=bf16", "--train.compile"])
    assert (cfg.train.precision, cfg.train.compile) == ("bf16", True)
    assert C.from_dict(yaml.safe_load(C.to_yaml(cfg))) == cfg
    with pytest.raises(ConfigError, match="train.precision must be one of 'fp32', 'bf16', got 'fp16'"):
        C.load(None, ["--train.precision=fp16"])
    # A run folder's config.yaml from before these fields (and before fidelity 2's layer_norm_eps) loads with the
    # values runs had then and keeps its hash (this value was computed before they existed), so its folder is found
    # again; today's code hashes apart from it.
    old = C.to_dict(C.load())
    del old["train"]["precision"], old["train"]["compile"], old["fidelity"], old["model"]["layer_norm_eps"]
    del old["data"]["val_persons"]
    before = C.from_dict(old)
    assert (before.fidelity, before.model.layer_norm_eps, before.train.precision) == (1, 1e-5, "fp32")
    assert before == dataclasses.replace(C.load(None, ["--model.layer_norm_eps=1e-5"]), fidelity=1)
    assert C.config_hash(before) == "e672104d" != C.config_hash(C.load())
    # bf16 computes something else, compile computes the same thing another way.
    assert C.config_hash(C.load(None, ["--train.precision=bf16"])) != C.config_hash(C.load())
    assert C.config_hash(C.load(None, ["--train.compile=true"])) == C.config_hash(C.load())


def test_every_field_has_a_doc():
    text = C.describe(C.load())
    for section in C.SECTIONS:
        cls = type(getattr(C.Config(), section))
        docs = C.field_docs(cls)
        assert set(docs) == {f for f in cls.__dataclass_fields__}, f"undocumented field in {section}"
    assert "# layer-normalise" in text and "l1_weight" in text


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="expected --key=value"):
        C.load(None, ["model.residual=true"])


def test_fidelity_is_the_codes_and_every_change_of_it_is_a_new_hash():
    cfg = C.load()
    assert cfg.fidelity == C.FIDELITY == 2 and cfg.model.layer_norm_eps == 1e-12
    with pytest.raises(ConfigError, match="fidelity is set by the code"):
        C.load(None, ["--fidelity=1"])
    # Asking today's code for the old epsilon still trains today's windows, wiring and schedule: a new run, not the old.
    old_eps = C.load(None, ["--model.layer_norm_eps=1e-5"])
    assert C.config_hash(old_eps) != C.config_hash(dataclasses.replace(old_eps, fidelity=1))
    with pytest.raises(ConfigError, match="model.layer_norm_eps must be positive"):
        C.load(None, ["--model.layer_norm_eps=0"])
    with pytest.raises(ConfigError, match=r"data.val_seed must differ from data.test_seed \(1\)"):
        C.load(None, ["--data.val_seed=1"])


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "..", ".", "a\\b"])
def test_a_run_name_is_a_folder_name_inside_runs_dir(name):
    with pytest.raises(ConfigError, match=r"train\.run_name must be a folder name inside train\.runs_dir"):
        C.load(None, [f"--train.run_name={name}"])


def test_a_variant_file_cannot_set_a_run_name_outside_runs_dir(tmp_path):
    path = _write(tmp_path / "v.yaml", {"train": {"run_name": "../escaped"}})
    with pytest.raises(ConfigError, match="train.run_name must be a folder name"):
        C.load(path)
    assert C.load(None, ["--train.run_name=mmnist_e3d_baseline"]).train.run_name == "mmnist_e3d_baseline"


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("train:\n  lr: 0.001\n  steps: 10\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"v\.yaml: not valid YAML .*key 'lr' given twice \(lines 2 and 4\)"):
        C.load(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_variant_file_is_refused_not_read_as_the_paper_defaults(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"empty\.yaml: sets nothing"):
        C.load(path)


def test_nested_sections_as_wandb_agent_passes_them_become_dotted_overrides():
    # A sweep file's nested parameters reach the command line as one flag per section, holding Python's str of a dict.
    args = ["--model={'residual': True, 'hidden': [16, 16]}", "--train={'lr': 0.001, 'threads': None}"]
    assert parse_overrides(args) == [("model.residual", "true"), ("model.hidden", "16,16"), ("train.lr", "0.001"),
                                     ("train.threads", "none")]  # fmt: skip
    cfg = load(None, args)
    assert cfg.model.residual is True and cfg.model.hidden == (16, 16) and cfg.train.lr == 0.001
    assert cfg.train.threads is None
    with pytest.raises(ConfigError, match=r"--model=\"\{'residual'\" is not a mapping of model keys"):
        parse_overrides(["--model={'residual'"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--model.residual_gate=zero"], r"model\.residual_gate 'zero' gates the residual skips, so it needs model\."),
        (["--train.init_optimizer=restore"], r"train\.init_optimizer 'restore' .* needs train\.init_from"),
    ],
)
def test_switches_that_need_another_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(None, overrides)


def test_residual_gate_and_init_optimizer_at_their_defaults_leave_run_ids_alone():
    cfg = load(None, ["--model.residual=true"])
    assert "residual_gate" not in hashed_fields(cfg)["model"] and "init_optimizer" not in hashed_fields(cfg)["train"]
    gated = load(None, ["--model.residual=true", "--model.residual_gate=zero"])
    assert config_hash(gated) != config_hash(cfg)


def test_residual_layers_hashes_only_where_it_changes_the_model():
    """Below 5 layers (or without residuals) the study's and the even wiring are one model: one id, whatever the record
    says, and a record from before the key reads as the wiring it ran (even)."""
    for depth_overrides in (["--model.residual=true"], ["--model.hidden=8,8,8,8,8,8"],
                            ["--model.residual=true", "--model.hidden=8,8,8,8"]):  # fmt: skip
        ids = {config_hash(load(None, [*depth_overrides, f"--model.residual_layers={w}"])) for w in ("study", "even")}
        assert len(ids) == 1, depth_overrides
        assert "residual_layers" not in hashed_fields(load(None, depth_overrides)).get("model", {})
    deep = ["--model.residual=true", "--model.hidden=8,8,8,8,8"]
    study, even = load(None, deep), load(None, [*deep, "--model.residual_layers=even"])
    assert study.model.residual_layers == "study" and config_hash(study) != config_hash(even)
    old = C.to_dict(even)
    del old["model"]["residual_layers"]  # a record written before the key: its id and its wiring are even's
    assert C.from_dict(old).model.residual_layers == "even" and config_hash(C.from_dict(old)) == config_hash(even)
    assert axis_values(old)["model.residual_layers"] == "even"
    shallow = C.to_dict(load(None, ["--model.residual=true"]))
    del shallow["model"]["residual_layers"]  # read as even, which computes what study does here: one row
    assert axis_values(shallow)["model.residual_layers"] == "study"
    assert C.from_dict(shallow) == load(None, ["--model.residual=true"])  # a shipped 2-layer file's config is today's


@pytest.mark.parametrize("name", ["../../escape_variant", "/tmp/absolute", "..", "a\\b"])
def test_a_variant_name_cannot_lead_its_run_folder_out_of_runs_dir(tmp_path, name):
    """The variant's name is the first part of its run folder's name: a path in it would write the run elsewhere."""
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"variant": name}))
    with pytest.raises(ConfigError, match=r"variant must be a name, since it names the run's folder"):
        load(path)
    assert not any(tmp_path.parent.glob("escape_variant*"))


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "is empty"), ("..", "is '..'"), ("a/b", "holds a path separator"), ("a\\b", "holds a path separator"),
     ("a\nb", "holds a control character"), ("a\0b", "holds a control character"), ("x" * 201, "longer than 200 bytes"),
     (5, "is int, not a name")],
)  # fmt: skip
def test_every_name_that_becomes_a_path_is_checked_by_one_rule(tmp_path, name, problem):
    """Variants, run names, sweep names, cell names, shipped names and manifest files all go through name_problem."""
    assert problem in name_problem(name)
    assert name_problem("mmnist_e3d_baseline-s0") is None and name_problem("x" * 200) is None
    if isinstance(name, str) and name:  # as a run's name, from a file (a line break or NUL survives YAML)
        path = tmp_path / "v.yaml"
        path.write_text(yaml.safe_dump({"variant": "v", "train": {"run_name": name}}))
        with pytest.raises(ConfigError, match=r"train\.run_name must be a folder name"):
            load(path)


@pytest.mark.parametrize("runs_dir", ["runs\ntouch /tmp/injected", "runs\r", "runs\0x"])
def test_a_runs_dir_with_a_line_break_is_refused_before_it_reaches_a_job_script(runs_dir):
    with pytest.raises(ConfigError, match=r"train\.runs_dir must not hold a line break or NUL"):
        load(None, [f"--train.runs_dir={runs_dir}"])


def _bomb(levels: int = 9) -> str:
    """A "billion laughs" YAML file: each level's list holds the previous one nine times (9**levels values)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (_bomb(), r"its aliases expand it past 100,000 values"),
        ("variant: " + "[" * 100 + "]" * 100 + "\n", r"nested 65 levels deep, more than the 64"),
    ],
    ids=["billion-laughs", "deep"],
)
def test_a_yaml_bomb_or_a_deep_nest_is_refused_at_once_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"bomb\.yaml: not valid YAML \({message}"):
        load(path)


def test_aliases_within_the_limits_still_read():
    assert C.read_yaml("base: &b {lr: 0.1}\nother: *b\n") == {"base": {"lr": 0.1}, "other": {"lr": 0.1}}
    assert C.read_yaml("") is None and C.read_yaml("x: 1") == {"x": 1}
