"""The Dockerfile as written: what it copies is in the build context, its base and user, nothing of a build machine.

The image itself is built and run by docker/build_check.sh (CI runs it with GIST_DOCKER_CHECK=1); these checks keep
the files it builds from consistent without a container engine.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
IGNORED = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
           if line.strip() and not line.startswith("#")]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.splitlines()
                                           if not line.lstrip().startswith("#")))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for parts in (line.strip().split(None, 1) for line in text.splitlines() if line.strip())]


def _ignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` (relative to the context) out: a pattern matches it or a folder above it."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(prefix, pattern.rstrip("/")) for pattern in IGNORED for prefix in prefixes)


def test_every_copied_path_exists_and_is_in_the_build_context():
    copies = [shlex.split(args)[:-1] for kind, args in _instructions() if kind in ("COPY", "ADD")]
    sources = [src for srcs in copies for src in srcs if not src.startswith("--")]
    assert {"requirements.txt", "gist_engine", "app", "assets", ".streamlit"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(src), f"COPY {src}: .dockerignore leaves it out of the build context"


def test_the_ignore_file_keeps_tests_and_build_tooling_out():
    for path in ("tests/conftest.py", "docs/install.md", "docker/build_check.sh", ".git/HEAD", ".ci/run"):
        assert _ignored(path), path
    assert not _ignored("gist_engine/__init__.py") and not _ignored("app/streamlit_app.py")


def test_base_defaults_to_python_slim_so_docker_build_dot_stays_the_command():
    steps = _instructions()
    assert steps[0] == ("ARG", "BASE=python:3.11-slim")
    assert steps[1] == ("FROM", "${BASE}")
    assert ("ARG", 'TORCH_INDEX_URL=""') in steps  # empty: the lock's torch from PyPI


def test_image_runs_as_a_non_root_user_with_the_app_and_a_health_check():
    steps = _instructions()
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    (cmd,) = [args for kind, args in steps if kind == "CMD"]
    assert "app/streamlit_app.py" in cmd and "--server.address=0.0.0.0" in cmd and "--server.port=8501" in cmd
    (health,) = [args for kind, args in steps if kind == "HEALTHCHECK"]
    assert "/_stcore/health" in health and ":8501/" in health


def test_no_build_machine_settings_are_copied_into_the_image():
    copied = " ".join(args for kind, args in _instructions() if kind in ("COPY", "ADD"))
    for secret in ("pip.conf", ".crt", ".pem", "/etc/", "certs", "netrc", "constraints"):
        assert secret not in copied
    env = " ".join(args for kind, args in _instructions() if kind in ("ENV", "ARG"))
    assert not re.search(r"PIP_(CERT|INDEX_URL|EXTRA_INDEX_URL|FIND_LINKS|CONSTRAINT)|REQUESTS_CA_BUNDLE|SSL_CERT", env)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_build_check_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "docker" / "build_check.sh")], check=True)
    compile((ROOT / "docker" / "smoke.py").read_text(encoding="utf-8"), "smoke.py", "exec")
