# One image for every ccopy role: the CSI plugin (controller and node), the replication
# sidecar, the namespace operator, the backup-site registrar and the array. The chart runs
# `ccopy ROLE ...` from it. The node plugin runs as root (privileged: loop devices, mounts);
# every other role runs as the image's user 65532.
#
#   docker build -t ghcr.io/consistent-copy/ccopy:0.1.0 .
FROM python:3.12-slim-bookworm

# The node plugin's and the array's Debian packages: the same list `make deps` installs.
COPY apt-runtime.txt /tmp/apt-runtime.txt
RUN apt-get update \
 && sed 's/#.*//' /tmp/apt-runtime.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/apt-runtime.txt

WORKDIR /src
COPY pyproject.toml README.md ./
COPY backend backend
COPY ccopy ccopy
COPY ccopy_api ccopy_api
COPY ccopy_common ccopy_common
COPY csi_driver csi_driver
COPY replication_sidecar replication_sidecar
RUN pip install --no-cache-dir . && rm -rf /src

USER 65532:65532
WORKDIR /
ENTRYPOINT ["ccopy"]
