# One image for the proxy, the hardware collector and the dashboard; compose picks the command.
# BASE_IMAGE: any Debian-based Python 3.11+ image (the tests build one from a debootstrap rootfs).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
WORKDIR /app
# A virtualenv of its own: the same on python:3.11-slim and on a plain Debian python3 (which keeps pip out of the system).
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH
# The locked versions first (their own layer: a code change does not reinstall them), checked against their hashes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN python3 -m venv /opt/venv && python3 -m pip install --quiet --require-hashes -r requirements/runtime.txt
# the wheel's data files (pyproject.toml data-files) come with the sources: prometheus.yml, alerts.yml, recording.yml, alertmanager.yml, .streamlit/
COPY pyproject.toml README.md prometheus.yml alerts.yml recording.yml alertmanager.yml ./
COPY ollama_otel_stack/ ollama_otel_stack/
COPY otel_proxy/ otel_proxy/
COPY hw_collector/ hw_collector/
COPY ui/ ui/
COPY .streamlit/ .streamlit/
RUN python3 -m pip install --quiet --no-deps . && useradd --system --uid 10001 --create-home --home-dir /home/monitor --shell /usr/sbin/nologin monitor
USER 10001
EXPOSE 8001 8002 3001
CMD ["otel-proxy", "--host", "0.0.0.0"]
