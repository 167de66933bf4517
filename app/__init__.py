"""GIST Studio, the Streamlit front end; installed as the package `gist_studio` (start it with `gist-studio`)."""
