"""`gist-studio`: starts the app with `streamlit run` on this folder's streamlit_app.py and the project's settings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

APP = Path(__file__).resolve().with_name("streamlit_app.py")

# The settings of the repository's .streamlit/config.toml (a test keeps the two equal), given as command-line
# options so that they hold from any working directory; options given to `gist-studio` come later and win.
SETTINGS: dict[str, str | int | bool] = {
    "server.address": "127.0.0.1",  # this machine only (the app has no login); --server.address 0.0.0.0 serves all
    "server.fileWatcherType": "none",  # torch's lazy modules break the file watcher
    "server.headless": True,
    "server.maxUploadSize": 200,  # MiB; the dataset importer applies its own, stricter caps
    "runner.postScriptGC": False,  # a full gc.collect(2) after every rerun stalled training beside the live page
    "browser.gatherUsageStats": False,
    "client.toolbarMode": "viewer",  # the menu keeps Settings: System, Light or Dark theme
    "theme.light.primaryColor": "#d62f6a",  # two variants: the theme follows the operating system's preference
    "theme.dark.primaryColor": "#e8578a",
}

USAGE = f"""usage: gist-studio [STREAMLIT OPTIONS]

Start GIST Studio (the Streamlit app) on its offline defaults, then browse to http://localhost:8501.
It listens on 127.0.0.1 only (the app has no login); --server.address 0.0.0.0 serves every network interface.
Every option is passed on to `streamlit run` (see `streamlit run --help`), e.g. --server.port 8502.
Runs and uploads live in $GIST_DATA_DIR, else the user data directory.

app: {APP}"""


def _flag_value(value: str | int | bool) -> str:
    """A setting as Streamlit's command line spells it (booleans in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def streamlit_argv(options: Sequence[str] = ()) -> list[str]:
    """The arguments of `streamlit run` for the app: the script, the project's settings, then `options`."""
    return ["run", str(APP), *(f"--{key}={_flag_value(value)}" for key, value in SETTINGS.items()), *options]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app's server until it is stopped; returns the exit status (`--help` prints the usage)."""
    options = list(sys.argv[1:] if argv is None else argv)
    if options and options[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        from streamlit.web import cli  # the `app` extra: imported here so that `--help` works without it
    except ImportError:
        print("gist-studio needs the app's packages: pip install 'gist-studio[app]'", file=sys.stderr)
        return 1
    # Streamlit's own console entry (the `streamlit` command), as a click group; it exits with the server's status.
    return cli.main(args=streamlit_argv(options), prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
