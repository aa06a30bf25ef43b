# uki-on-demand: one entry point for operators and CI. Every target installs what it needs.
#   make run               install, build, make the default base artifacts if absent, start the service
#   make test              everything CI checks: typecheck, unit, API and QEMU end-to-end tests
#   make test-reliability  crash, disk-full, bad-input, BMC-stress and property tests
#   make bench             benchmarks against same-run baselines → bench/results.json
#   make bench-fleet       inspection and provisioning of N = 1, 10, 25, 50 simulated servers
#   make base-artifacts    kernels, tiny test initramfs images, the ephemeral OS
#   make target-image      the target OS disk image (qcow2) that provisioning writes to disks
#   make lab               a private network with virtual servers behind Redfish BMCs (LAB_SERVERS=2)
#   make lab-down          stops the lab and removes everything it made
#   make demo              on a running lab: inspection, then provisioning, then the SSH command
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

OUT  := base-artifacts/out
WORK := base-artifacts/work
ARCHES := amd64 arm64
# The ephemeral OS is built for these architectures (arm64 needs binfmt emulation; see README).
EPHEMERAL_ARCHES ?= amd64
RUN_ARGS ?=

KERNELS   := $(foreach a,$(ARCHES),$(OUT)/vmlinuz-$(a))
TINY      := $(foreach a,$(ARCHES),$(OUT)/initramfs-tiny-$(a).img)
EPHEMERAL := $(foreach a,$(EPHEMERAL_ARCHES),$(OUT)/initramfs-$(a).img)

.PHONY: help deps node build run test test-unit test-e2e test-lab test-orchestrator test-reliability bench base-artifacts base-artifacts-tiny lab lab-down demo clean

help:
	@sed -n 's/^#   //p' Makefile

deps:
	@scripts/install-deps.sh

# npm 11 with this machine's npmrc (omit-lockfile-registry-resolved) writes locks that its own `npm ci`
# refuses (rollup's optional per-platform packages are left out); `npm install` then installs from the
# same lock.
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund || npm install --no-audit --no-fund
node: node_modules/.package-lock.json

build: node
	npm run build

$(OUT)/vmlinuz-%: base-artifacts/fetch-kernel.sh
	base-artifacts/fetch-kernel.sh $* $(OUT) $(WORK)

$(OUT)/initramfs-tiny-%.img: $(OUT)/vmlinuz-% $(wildcard base-artifacts/tiny/*)
	base-artifacts/tiny/build.sh $* $(OUT) $(WORK)

$(OUT)/initramfs-%.img: $(OUT)/vmlinuz-% $(shell find base-artifacts/ephemeral -type f 2>/dev/null)
	base-artifacts/ephemeral/build.sh $* $(OUT) $(WORK)

# The target OS disk image (Debian 12, cloud-init, UKI on the ESP): base-artifacts/target/README.md.
.PHONY: target-image
target-image: deps $(OUT)/target-debian12-amd64.qcow2
# Its UKI is signed for Secure Boot with TARGET_SECURE_BOOT_KEY/_CERT: by default a key made here once,
# whose certificate the lab puts in the db of its Secure Boot servers (as a vendor's key is in a server's).
TARGET_SECURE_BOOT_KEY ?= $(WORK)/target-signing/db.key
TARGET_SECURE_BOOT_CERT ?= $(WORK)/target-signing/db.pem
$(WORK)/target-signing/db.key $(WORK)/target-signing/db.pem:
	mkdir -p $(WORK)/target-signing
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=uki-on-demand target image signing key" \
		-keyout $(WORK)/target-signing/db.key -out $(WORK)/target-signing/db.pem 2>/dev/null
$(OUT)/target-debian12-%.qcow2: $(shell find base-artifacts/target base-artifacts/lib -type f 2>/dev/null) $(TARGET_SECURE_BOOT_KEY) $(TARGET_SECURE_BOOT_CERT)
	TARGET_SECURE_BOOT_KEY=$(TARGET_SECURE_BOOT_KEY) TARGET_SECURE_BOOT_CERT=$(TARGET_SECURE_BOOT_CERT) \
		base-artifacts/target/build.sh $* $(OUT) $(WORK)

base-artifacts-tiny: deps $(KERNELS) $(TINY)
base-artifacts: deps $(KERNELS) $(TINY) $(EPHEMERAL) $(OUT)/target-debian12-amd64.qcow2

run: deps build
	@[ -e $(OUT)/vmlinuz-amd64 ] && [ -e $(OUT)/initramfs-amd64.img ] || $(MAKE) base-artifacts
	node dist/cli.js serve $(RUN_ARGS)

# vitest's own summary is followed by one plain "N passed, N failed, N skipped" line for CI; a skipped
# test fails the run, and a missing base artifact, package or root fails the file that needs it.
VITEST = node scripts/run-vitest.mjs

# The orchestrator collection's Python rules, with Debian's interpreter (it has ansible and sushy; the
# python3 first on PATH may not); the JUnit report joins CI's closing line.
PYTEST = cd orchestrator && /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/unit

test: deps build base-artifacts
	npm run typecheck
	$(PYTEST) --junitxml=../test-results/pytest-orchestrator.xml
	UOD_TEST_LABEL=test $(VITEST) test/unit test/api test/e2e test/lab test/orchestrator

# Unit and API tests read the kernels and tiny images and build with the host tools (make deps).
test-unit: node base-artifacts-tiny
	$(VITEST) test/unit test/api

test-e2e: deps node base-artifacts
	$(VITEST) test/e2e

test-lab: deps build base-artifacts
	$(VITEST) test/lab

test-orchestrator: deps build base-artifacts
	$(PYTEST)
	$(VITEST) test/orchestrator

# As root: the disk-full tests mount a tmpfs, the cpio round trip restores owners.
test-reliability: deps node base-artifacts-tiny
	UOD_TEST_LABEL=reliability $(VITEST) test/reliability

bench: deps build base-artifacts-tiny
	node --expose-gc bench/run.mjs

# The orchestrator at fleet size on simulated servers (bench/README.md "Fleet"): about 30 minutes.
.PHONY: bench-fleet
bench-fleet: deps build base-artifacts
	node bench/fleet.mjs

# The lab (README "The lab"): options as make variables, e.g. make lab LAB_SERVERS=3 LAB_ACCEL=kvm
# LAB_QUIRKS="server2=post-lock,eject-lag"; LAB_SECOND_NIC=provisioning LAB_VLAN=100 for a bond on a VLAN.
LAB_NAMESPACE ?= uod-lab
LAB_SERVERS ?= 2
LAB_MEMORY ?= 1536
LAB_CPUS ?= 1
LAB_DISK_GIB ?= 8
LAB_ACCEL ?= tcg
LAB_QUIRKS ?=
LAB_SECOND_NIC ?= data
LAB_VLAN ?= 0
# BMC profiles (lab/README.md "BMC profiles"): LAB_BMC_PROFILE=dell for every server, or one per server
# LAB_BMC_PROFILES=dell,hpe; a directory holding a recording works too. LAB_STATIC_SERVERS=server1:
# DHCP for that server's firmware HTTP boot only, none for its OSes.
LAB_BMC_PROFILE ?= standard
LAB_BMC_PROFILES ?=
LAB_STATIC_SERVERS ?=
# LAB_SECURE_BOOT=1 (every server) or =server1,server2: firmware enforcing Secure Boot, db with a lab key.
LAB_SECURE_BOOT ?=
# LAB_TPM=1 (every server) or =server1: a TPM 2.0 (swtpm); the ephemeral OS reports its PCR 11.
LAB_TPM ?=
# LAB_SIMULATED=36 (of LAB_SERVERS=40): the last 36 servers are simulated (lab/README.md "Simulated
# servers"): the ephemeral OS in a container, no QEMU; they read their artifact at LAB_LINK_MBPS.
LAB_SIMULATED ?= 0
LAB_LINK_MBPS ?= 1000
LAB_ARGS = --namespace $(LAB_NAMESPACE) --servers $(LAB_SERVERS) --memory $(LAB_MEMORY) --cpus $(LAB_CPUS) \
	--disk-gib $(LAB_DISK_GIB) --accel $(LAB_ACCEL) $(foreach q,$(LAB_QUIRKS),--quirks $(q)) \
	--second-nic $(LAB_SECOND_NIC) --vlan $(LAB_VLAN) --bmc-profile $(LAB_BMC_PROFILE) \
	$(if $(LAB_BMC_PROFILES),--bmc-profiles $(LAB_BMC_PROFILES)) $(if $(LAB_STATIC_SERVERS),--static-servers $(LAB_STATIC_SERVERS)) \
	$(if $(LAB_SECURE_BOOT),--secure-boot $(if $(filter 1,$(LAB_SECURE_BOOT)),all,$(LAB_SECURE_BOOT))) \
	$(if $(LAB_TPM),--tpm $(if $(filter 1,$(LAB_TPM)),all,$(LAB_TPM))) \
	--simulated $(LAB_SIMULATED) --simulated-link-mbps $(LAB_LINK_MBPS)

lab: deps build base-artifacts
	node dist/lab/cli.js up $(LAB_ARGS)

demo: lab
	lab/demo.sh /var/tmp/uod-lab/$(LAB_NAMESPACE)/lab.json

lab-down:
	@if [ -e dist/lab/cli.js ]; then node dist/lab/cli.js down --namespace $(LAB_NAMESPACE); \
	else ip netns del $(LAB_NAMESPACE) 2>/dev/null; rm -rf /var/tmp/uod-lab/$(LAB_NAMESPACE); fi

clean:
	rm -rf dist data test-results bench/work
