"""mentalsim installs like a package: `pip wheel .` builds, the wheel holds the code and the variant files (not the
shipped checkpoints), and its `mentalsim` command runs outside the repository."""

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import launch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_the_code_and_variants_and_its_command_runs_outside_the_repository(tmp_path):
    source = tmp_path / "source"  # a copy, so the build's own folders (build/, *.egg-info) stay out of the work tree
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (
            (ROOT / name).is_file()
            and "/pretrained/" not in name
            and name.split("/")[0]
            in ("core", "ablations", "analysis", "launch.py", "pyproject.toml", "README.md", "requirements.txt")
        ):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, timeout=240)  # fmt: skip
    (wheel,) = wheels.glob("mentalsim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"launch.py", "core/models/stack.py", "ablations/sweep_file.py", "analysis/report.py",
            "ablations/moving_mnist/base.yaml", "ablations/kth/e2d.yaml"} <= set(names)  # fmt: skip
    assert not [name for name in names if name.endswith(".pt") or name.startswith(("tests/", "sweeps/"))]
    entry_points = zipfile.ZipFile(wheel).read("mentalsim-0.1.0.dist-info/entry_points.txt").decode()
    assert "mentalsim = launch:main" in entry_points

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=240)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    variant = ROOT / "ablations/moving_mnist/predrnn.yaml"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([str(site / "bin" / "mentalsim"), "config", str(variant)], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "variant: mmnist_predrnn" in shown.stdout and "name: predrnn" in shown.stdout
    helped = subprocess.run([str(site / "bin" / "mentalsim"), "--help"], cwd=elsewhere, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert helped.returncode == 0 and "train" in helped.stdout and "sweep" in helped.stdout


def test_a_python_without_the_requirements_is_told_how_to_get_them(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert launch.main(["train", "ablations/moving_mnist/e3d_baseline.yaml"]) == 2
    err = capsys.readouterr().err
    assert "error: torch is not installed in this Python" in err and "make setup" in err and ".venv/bin/python" in err
    # Resolving a config needs no torch.
    assert launch.main(["config", "ablations/moving_mnist/e3d_baseline.yaml"]) == 0
