# One image for every ccopy role: the CSI plugin (controller and node), the replication
# sidecar, the namespace operator, the backup-site registrar and the array. The chart runs
# `ccopy ROLE ...` from it. The node plugin runs as root (privileged: loop devices, mounts);
# every other role runs as the image's user 65532 on a read-only root file system.
#
#   make image                 # docker, podman or buildah, whichever is installed
#
# BASE is any Debian 12 image with Python 3.11 (the tests' Python) and its venv module; the
# default is the public Python image, pinned by digest so a rebuild takes the same base. The
# tests build this same file on a base they make without a registry (tests/image).
ARG BASE=docker.io/library/python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
FROM ${BASE}

# The node plugin's and the array's Debian packages: the same list `make deps` installs.
COPY apt-runtime.txt /tmp/apt-runtime.txt
RUN apt-get update \
 && sed 's/#.*//' /tmp/apt-runtime.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/apt-runtime.txt

# The dependencies, pinned by the constraints the tests' virtualenv is installed with, in a
# layer of their own: a change to the source rebuilds only the layer below.
ENV VIRTUAL_ENV=/opt/ccopy PATH=/opt/ccopy/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt pyproject.toml ./
RUN python3 -m venv /opt/ccopy \
 && python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
      > requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r requirements.txt setuptools

COPY README.md ./
COPY backend backend
COPY ccopy ccopy
COPY ccopy_api ccopy_api
COPY ccopy_common ccopy_common
COPY csi_driver csi_driver
COPY replication_sidecar replication_sidecar
# The native data path (backend/native, C) is compiled here: gcc and Python's headers (the
# public Python image has them; Debian's Python gets python3-dev) for this step only.
RUN build="gcc libc6-dev" \
 && include=$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))') \
 && { [ -f "$include/Python.h" ] || build="$build python3-dev"; } \
 && apt-get update && apt-get install -y --no-install-recommends $build \
 && pip install --no-cache-dir --no-deps --no-build-isolation . \
 && apt-get purge -y --auto-remove $build && rm -rf /var/lib/apt/lists/* \
 && pip uninstall -y -q setuptools pip \
 && cd / && rm -rf /src \
 && python3 -c 'import backend._nbdcore'  # the installed core, not the source folder, loads

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ccopy" \
      org.opencontainers.image.description="Consistent Copy: storage array, CSI driver and replication sidecar for disaster-recovery backup on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

USER 65532:65532
WORKDIR /
ENTRYPOINT ["ccopy"]
