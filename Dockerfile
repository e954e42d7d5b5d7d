# Two stages: the first builds a virtualenv, the second only copies it. The final image has no compiler, no
# pip, no source tree and no secrets; certificates are made at run time (or mounted), never baked in.
# The base is pinned by digest (the index of every platform; the tag is only for people). The digest is the one
# docker-library/repo-info records for python:3.11.16-slim-bookworm (commit 422f3cfe488d, built 2026-09-01);
# Renovate moves tag and digest together (renovate.json). Debian 12's Python 3.11, like the test base.
ARG PYTHON_IMAGE=python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# Exactly the locked dependency set, each file checked against its hash, nothing resolved here: what ships is what
# `make install` tested (docs/image.md). The build backend is locked too, so the project's own wheel is
# built by the same setuptools every time. --no-compile: the bytecode is made once below, reproducibly.
COPY requirements/build.txt requirements/runtime.txt ./requirements/
RUN /opt/venv/bin/pip install --no-compile --require-hashes --no-deps \
      -r requirements/build.txt -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# Bytecode is compiled here and kept: the final image runs with a read-only root filesystem and
# PYTHONDONTWRITEBYTECODE, so without it every start compiled every module again (measured: imports 1.3 s
# instead of 0.27 s). unchecked-hash: the files never change inside the image, so no timestamp check is needed,
# and the .pyc files hold no build time, so two builds write the same bytes (docs/image.md). -f: a module some
# step imported here already has a timestamped .pyc, which compileall would otherwise keep (seen: attrs').
RUN /opt/venv/bin/pip install --no-compile --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

FROM ${PYTHON_IMAGE}
# The release workflow passes the version, the commit and the commit's time (org.opencontainers.image.created from
# the commit, not the clock, so a rebuild of one commit labels alike); the registry path is the chart's
# (release/pin.py).
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/apiserver-tls-guard/apiserver-tls-guard
LABEL org.opencontainers.image.title="apiserver-tls-guard" \
      org.opencontainers.image.description="Admission webhook for kube-apiserver TLS flags (CIS 1.2)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}#readme" \
      org.opencontainers.image.vendor="apiserver-tls-guard maintainers" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# A fixed non-root UID; the Deployment also sets runAsNonRoot and a read-only root filesystem.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["apiserver-tls-guard"]
CMD ["serve", "--certs-dir=/var/run/apiserver-tls-guard/certs"]
