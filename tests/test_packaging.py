"""The package as users get it: a wheel installed (not editable) into a fresh venv.

The venv borrows this environment's dependencies (torch is 700 MB) through a .pth line
that adds their site-packages *after* its own, so `hazardwatch` comes from the wheel and
nothing from the repository is on the path: the commands run from a directory outside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a venv with hazardwatch installed from a freshly built wheel."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(REPO_ROOT)],
        check=True, cwd=root, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("hazardwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("hazardwatch/config/prompts.yaml", "hazardwatch/config/eval/hazard-scenes.yaml",
                    "hazardwatch/migrations/env.py", "hazardwatch/migrations/script.py.mako",
                    "hazardwatch/migrations/versions/0003_camera_normal.py",
                    "hazardwatch/api/page/index.html",
                    "hazardwatch/api/page/review.js"):  # fmt: skip
        assert shipped in names, f"{shipped} is not in the wheel"
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run(
        [str(bin_dir / "python"), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    # Dependencies from this environment, after the venv's own site-packages.
    (Path(purelib) / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install",
         "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    return bin_dir


def _run(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAZARDWATCH_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(bin_dir / "hazardwatch"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_installed_wheel_migrates_and_runs_outside_the_repository(
    installed: Path, tmp_path: Path, tiny_clip_weights: Path, red_clip: Path
) -> None:
    code = (
        "import hazardwatch; from hazardwatch.scoring.bank import DEFAULT_BANK; "
        "from hazardwatch.storage.migrate import migrations_dir; "
        "print(hazardwatch.__file__, DEFAULT_BANK.is_file(), DEFAULT_BANK, migrations_dir())"
    )
    where = subprocess.run(
        [str(installed / "python"), "-c", code],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    venv_root = str(installed.parent)
    assert where[1] == "True"  # the default prompt bank is there
    for path in (where[0], where[2], where[3]):
        assert path.startswith(venv_root) and str(REPO_ROOT) not in path, where
    migrate = _run(installed, ["migrate"], tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    assert (tmp_path / "data" / "hazardwatch.db").is_file()
    run = _run(
        installed,
        ["run", "--source", str(red_clip), "--model", str(tiny_clip_weights), "--no-api"],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "frames" in run.stdout + run.stderr  # the run's summary
    check = _run(installed, ["config", "check"], tmp_path)
    assert check.returncode == 0, check.stderr
