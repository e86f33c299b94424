# The two commands of the README: `make demo` and `make test`. Each creates .venv when it is
# missing and installs what it needs; nothing else has to be set up by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench chaos test-deploy test-arm image test-image test-tunnel test-fleet clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@# python-gammu is a second independent PDU decoder for the differential tests. It
	@# compiles against libgammu-dev, which a fresh machine may lack: then those tests skip.
	@$(BIN)/python -m pip install -q python-gammu >/dev/null 2>&1 || \
		echo "note: python-gammu not installed (needs libgammu-dev); its differential tests will skip"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/simedge demo

lint: $(STAMP)
	$(BIN)/ruff check agent tui tests bench
	$(BIN)/ruff format --check agent tui tests bench

# pytest exits 5 when no test ran; make treats that as the failure it is.
test: lint
	$(BIN)/python -m pytest -q

# deploy/install.sh run for real into a debootstrapped Debian root, then the Ansible
# playbook in check mode there. Needs root and the network; minutes, so not in `make test`.
test-deploy:
	deploy/test-deploy.sh

# simedge on the Pi's architectures (arm64, armhf) under qemu-user: install.sh in a Debian
# root of each, check-config as the service user, protocol, end-to-end and tmux dashboard
# tests inside the root. Needs root and the network; minutes, so not in `make test`.
test-arm:
	deploy/test-arm.sh

# A Raspberry Pi image (arm64) from Debian's kernel and raspi-firmware, simedge installed
# from a wheelhouse; then booted in qemu-system-aarch64 with a settings file on its boot
# partition. Need root and the network; many minutes, so not in `make test`.
image:
	deploy/build-image.sh

test-image:
	deploy/test-image.sh

# A site behind NAT reached through the relay (deploy/relay, deploy/tunnel): network
# namespaces for the site, the relay and "the internet", real sshd and Caddy from Debian,
# the tunnel cut and restored. Needs root; a few minutes, so not in `make test`.
test-tunnel: $(STAMP)
	@if ! command -v caddy >/dev/null || ! command -v nft >/dev/null || [ ! -x /usr/sbin/sshd ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		  --no-install-recommends openssh-server openssh-client caddy nftables iproute2 >/dev/null; fi
	PYTHON=$(abspath $(BIN)/python) deploy/test-tunnel.sh

# A fleet on Debian's Prometheus: three real agents on emulated hubs (one pushing through
# Prometheus agent mode), the shipped alert rules (a test copy with short for:), one site
# broken and healed (tests/fleet/test_fleet.py). A few minutes, so not in `make test`.
test-fleet: $(STAMP)
	@if ! command -v prometheus >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		  --no-install-recommends prometheus >/dev/null; fi
	SIMEDGE_TEST_FLEET=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/fleet

# peers_bench compares simedge with gammu-smsd, smstools3 and python-gsmmodem-new: as root
# the two daemons are installed here (the bench runs its own instances); else their rows
# in bench/RESULTS.md say why they were skipped. pi_bench holds the agent to a quarter of
# one core in a cgroup it makes and removes (root; else its row says why).
bench: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq gammu-smsd smstools >/dev/null; } || \
		echo "note: gammu-smsd/smstools not installed; peers_bench will skip them"; fi
	@$(BIN)/python -m pip install -q python-gsmmodem-new >/dev/null 2>&1 || \
		echo "note: python-gsmmodem-new not installed; peers_bench will skip it"
	$(BIN)/python -m bench

# The real agent against the emulated world while things go wrong: crashes, uplink faults,
# modem storms, a full disk, fuzzing. A verdict line per scenario; under 10 minutes.
# clockjump runs the agent under libfaketime (Debian's faketime) and storefull fills and
# breaks a real ext4 on a loop device (e2fsprogs, util-linux): as root they are installed
# here; elsewhere those scenarios say that they skipped.
chaos: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && ! command -v faketime >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq faketime e2fsprogs util-linux >/dev/null; } || \
		echo "note: faketime not installed; the clockjump scenario will skip"; fi
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
