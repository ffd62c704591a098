# tandem: the commands a newcomer and CI use. See README.md.
SHELL := /bin/bash
CARGO ?= cargo

# Debian packages the tests and the demo use. `make deps` installs the
# missing ones and nothing else; it runs apt-get update only when it must.
# fonts-dejavu-core: the text of the bench's chart. cyrus-common (Cyrus's
# master and tools), sasl2-bin (saslpasswd2) and cyrus-admin: the Cyrus
# backends of tests/src/cyrus.rs; cyrus-common needs a mail transport agent,
# and `deps` adds dma (no daemon, no port) when the machine has none.
DEB_PACKAGES := dovecot-imapd dovecot-lmtpd isync offlineimap3 python3 ca-certificates fonts-dejavu-core cyrus-common cyrus-admin sasl2-bin

# Debian's cyrus-imapd (the imapd binary) conflicts with dovecot-imapd, so
# `deps` unpacks it (same version as cyrus-common) here instead of
# installing it: imapd is $(CYRUS_ROOT)/usr/lib/cyrus/bin/imapd.
CYRUS_ROOT := /opt/tandem-cyrus

.PHONY: all deps build test fmt-check clippy unit demo bench chaos stress fuzz clean

all: build

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	[ -e /usr/sbin/sendmail ] || missing="$$missing dma"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  policy=""; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; \
	  fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; rc=$$?; \
	  [ -z "$$policy" ] || rm -f $$policy; \
	  [ $$rc -eq 0 ] || exit $$rc; \
	else \
	  echo "deps: Debian packages present"; \
	fi
	@# The tests start their own Cyrus instances; the system's cyrus-imapd
	@# service (from cyrus-common; a policy-rc.d kept it from starting at
	@# install) must never run and hold ports 143, 4190...
	@if [ -d /run/systemd/system ]; then systemctl disable --now cyrus-imapd.service >/dev/null 2>&1 || true; fi
	@if [ -e /etc/init.d/cyrus-imapd ]; then update-rc.d cyrus-imapd disable >/dev/null 2>&1 || true; \
	  [ ! -s /run/cyrus-master.pid ] || /etc/init.d/cyrus-imapd stop >/dev/null 2>&1 || true; fi
	@# imapd itself: unpacked from Debian's cyrus-imapd of cyrus-common's
	@# version into $(CYRUS_ROOT) (again when cyrus-common changes version).
	@v=$$(dpkg-query -W -f='$${Version}' cyrus-common); \
	if [ "$$(cat $(CYRUS_ROOT)/VERSION 2>/dev/null)" = "$$v" ] && [ -x $(CYRUS_ROOT)/usr/lib/cyrus/bin/imapd ]; then \
	  echo "deps: Cyrus imapd $$v present in $(CYRUS_ROOT)"; \
	else \
	  tmp=$$(mktemp -d) && cd $$tmp && \
	  { apt-get download -qq -o APT::Sandbox::User=root cyrus-imapd=$$v 2>/dev/null || \
	    { apt-get update -qq && apt-get download -qq -o APT::Sandbox::User=root cyrus-imapd=$$v; }; } && \
	  rm -rf $(CYRUS_ROOT) && mkdir -p $(CYRUS_ROOT) && dpkg-deb -x cyrus-imapd_*.deb $(CYRUS_ROOT) && \
	  echo "$$v" > $(CYRUS_ROOT)/VERSION && cd / && rm -rf $$tmp && \
	  echo "deps: unpacked Cyrus imapd $$v into $(CYRUS_ROOT)" || { echo "deps: could not unpack cyrus-imapd $$v (gone from the archive? apt-get install --only-upgrade cyrus-common, then make deps)" >&2; \
	       cd /; rm -rf "$$tmp"; exit 1; }; \
	fi
	@# promtool (package prometheus) checks deploy/'s alert rules; without it
	@# the deploy test falls back to a structural check, so a failed install
	@# is not fatal. Its service is never started.
	@command -v promtool >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1)) \
	  && echo "deps: installed prometheus (promtool)" || echo "deps: promtool not installed; deploy rules get the structural check only"; }
	@command -v $(CARGO) >/dev/null || { echo "deps: cargo not found; install Rust with rustup" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

build:
	$(CARGO) build --workspace --all-targets

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# At most 4 tests at once per test binary: the cluster tests run three Raft
# nodes each, and on two cores more at once starve their heartbeats.
unit:
	$(CARGO) test --workspace -- --test-threads=4

test: deps fmt-check clippy unit

# A local cluster of real Dovecots and tandem nodes on the documented ports
# (node n: IMAP n143, Dovecot n144); Ctrl-C stops everything.
DEMO_ARGS ?=
demo: deps
	$(CARGO) build -p tandem-proxy
	./target/debug/tandem demo $(DEMO_ARGS)

# The micro-benchmarks (parser, replicated log, the proxy's memory per
# session), then the side-by-side report (bench/src/bin/bench.rs, release
# builds): direct Dovecot, Dovecot's proxy, tandem in four layouts and
# Dovecot's dsync replication. It prints the table and writes
# bench/results.json and bench/latency.png. BENCH_SECONDS per round
# (default 3), BENCH_ROUNDS (default 2), BENCH_FILTER (part of a workload's
# name, e.g. "APPEND"), BENCH_AT (leader or follower: where tandem's clients
# connect; by default node 1, whichever it is).
bench: deps
	$(CARGO) bench -p tandem-parser --bench parse
	$(CARGO) bench -p tandem-replicator --bench commit
	$(CARGO) bench -p tandem-proxy --bench proxy
	$(CARGO) build --release -p tandem-proxy --bin tandem
	$(CARGO) build --release -p tandem-bench --bin bench
	TANDEM_BIN=$(CURDIR)/target/release/tandem ./target/release/bench --out bench

# The chaos campaign: CHAOS_SECONDS of faults (default 600) from CHAOS_SEED
# (default: the clock), against Dovecot, CHAOS_BACKEND=cyrus or CHAOS_BACKEND=mixed
# (Dovecot, Cyrus, Dovecot) backends,
# then the checker. Ends with one line:
# "chaos: seed S, N faults, M ops (K acknowledged), V violations".
CHAOS_SECONDS ?= 600
chaos: deps
	$(CARGO) build --release -p tandem-proxy --bin tandem
	$(CARGO) build --release -p tandem-tests --bin chaos
	TANDEM_BIN=$(CURDIR)/target/release/tandem ./target/release/chaos --seconds $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED),) $(if $(CHAOS_BACKEND),--backend $(CHAOS_BACKEND),)

# The randomized stress with a client-side model (tests/src/stress/):
# STRESS_SECONDS per mode (default 1800) from STRESS_SEED (default: the
# clock), straight at Dovecot, then through one node, then across three;
# STRESS_USERS=2 for alice and bob. Prints each mode's ops/s and
# violations; exits 1 on any violation.
STRESS_SECONDS ?= 1800
STRESS_USERS ?= 1
stress: deps
	$(CARGO) build --release -p tandem-proxy --bin tandem
	$(CARGO) build --release -p tandem-tests --bin stress
	TANDEM_BIN=$(CURDIR)/target/release/tandem ./target/release/stress --seconds $(STRESS_SECONDS) --users $(STRESS_USERS) $(if $(STRESS_SEED),--seed $(STRESS_SEED),) --mode direct --mode one-node --mode three-nodes

# Fuzz targets need the nightly toolchain and cargo-fuzz; CI does not run them.
FUZZ_SECONDS ?= 60
fuzz:
	@rustup toolchain list | grep -q nightly || { echo "make fuzz: needs the nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@if [ ! -d parser/fuzz ]; then echo "make fuzz: no fuzz targets yet (parser/fuzz)" >&2; exit 1; fi
	@cd parser && for t in $$($(CARGO) +nightly fuzz list); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	$(CARGO) clean
