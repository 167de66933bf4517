"""The package layout (pyproject.toml holds everything else): gist_engine, and app/ installed as gist_studio.

The app is a folder of flat modules run by Streamlit's script runner (`import state`, `import charts`), with its
pages in views/ and the example configs in assets/. The wheel keeps that shape under gist_studio/ so that
`gist-studio` runs the same streamlit_app.py: views/*.py as package data, assets/ as gist_studio/assets/.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["gist_engine", "gist_engine.*"]), "gist_studio", "gist_studio.assets"],
    package_dir={"gist_studio": "app", "gist_studio.assets": "assets"},
    package_data={
        "gist_studio": ["views/*.py", "icon.png"],
        "gist_studio.assets": ["**/*.yaml", "**/*.yml", "**/*.json", "**/*.csv", "**/*.toml",
                               "gallery/**/*.parquet", "gallery/**/*.npz", "gallery/**/*.safetensors"],
    },
)
