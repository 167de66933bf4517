# GIST Studio: the Streamlit app on a slim Python, as a non-root user, offline on its defaults.
#   docker build -t gist-studio .
#   docker run -p 127.0.0.1:8501:8501 -v gist-data:/data gist-studio   -> http://localhost:8501 (this host only)
# CPU-only torch wheels make a much smaller image: torch and torchvision (the lock's versions) from a PEP 503 index
# that serves CPU builds, everything else as above (PyPI's Linux torch wheels are CUDA builds with the nvidia-* libraries):
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t gist-studio:cpu .
# BASE: any Debian image with Python 3.11 on PATH (docker/build_check.sh makes one where the registry is unreachable).
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GIST_DATA_DIR=/data \
    GIST_CACHE_DIR=/data/cache \
    HF_HUB_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
# The same requirements as everywhere else, installed before the code so code changes keep this layer cached.
COPY requirements.txt ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --no-deps --index-url "$TORCH_INDEX_URL" $(grep -oE '^torch(vision)?==[^ ]+' requirements.txt); \
    fi \
    && pip install -r requirements.txt

COPY pyproject.toml README.md ./
COPY gist_engine ./gist_engine
COPY app ./app
COPY assets ./assets
COPY .streamlit ./.streamlit

# A non-root user owning the data directory (runs.sqlite3, run folders, uploads, the converted backbone cache).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin gist \
    && mkdir -p /data/cache \
    && chown -R gist:gist /data
USER gist
VOLUME ["/data"]

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read() != b'ok')"

# .streamlit/config.toml binds 127.0.0.1 (this machine only); inside a container that would be unreachable through
# `docker run -p`, so the image listens on every interface of the container. Publish it to this host only with
# `-p 127.0.0.1:8501:8501`; `-p 8501:8501` exposes the app (which has no login) to the network.
CMD ["streamlit", "run", "app/streamlit_app.py", \
     "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true", \
     "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"]
