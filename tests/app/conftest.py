"""The app's modules import each other by bare name (`streamlit run` puts app/ on sys.path): its tests do the same."""

import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[2] / "app"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))
