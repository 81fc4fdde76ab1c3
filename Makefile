# Farside: every target installs what it needs first (idempotent), so a fresh Debian machine
# needs only `make demo` or `make test`, run as root.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the project needs at run time and in tests: QEMU for VMs, qemu-img and
# qemu-io for disk images and image locks; chromium for the console's browser tests (Playwright
# drives it; it never downloads a browser of its own); xfsprogs for the lab's and the benchmark's
# reflink LUN (XFS in a loop file).
DEB_PACKAGES := python3-venv qemu-system-x86 qemu-utils chromium xfsprogs
# Only the benchmarks need these: rsync is bench/mirror.py's baseline, zstd bench/xva.py's.
BENCH_DEB_PACKAGES := rsync zstd
# Every QEMU runs as this unprivileged system user (farside.config.DEFAULT_QEMU_USER): no home,
# no shell, no files of its own; the server hands it its disks as open descriptors.
QEMU_USER := farside-qemu

.PHONY: setup deps qemu-user test check lint bench demo soak clean

setup: deps qemu-user $(STAMP)

# Checked on every run (a dpkg query each): a package removed later is installed again.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Checked on every run, like the packages.
qemu-user:
	@getent passwd $(QEMU_USER) >/dev/null || { \
		echo "creating system user $(QEMU_USER)"; \
		useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $(QEMU_USER); \
	}

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

soak: setup
	FARSIDE_SOAK=1 $(PY) -m pytest -q

check: setup
	$(VENV)/bin/ruff check src tests bench demo
	$(VENV)/bin/ruff format --check src tests bench demo
	$(VENV)/bin/mypy
	$(PY) -m pytest -q tests/unit/test_layers.py

bench: setup
	@missing=""; for p in $(BENCH_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(PY) bench/api.py
	$(PY) bench/events.py
	$(PY) bench/vm_boot.py
	$(PY) bench/migrate.py
	$(PY) bench/metadata.py
	$(PY) bench/failover.py
	$(PY) bench/mirror.py
	$(PY) bench/metrics.py
	$(PY) bench/xva.py
	$(PY) bench/snapshot.py

demo: setup
	$(PY) demo/two_sites.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
