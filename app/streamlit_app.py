"""GIST Studio's Streamlit front end (the pages arrive with the app issue; the engine's CLI works today)."""
