# bulwark — build, run and test.
#
#   make run     build and start a dev node on 127.0.0.1 (./bulwark-data)
#   make test    everything CI runs: deps, go.mod tidy, gofmt, go vet, tests with -race,
#                a minute of the chaos checker (chaos-short), the alert rules'
#                tests (alerts-check)
#   make chaos   failover timings and the full nemesis with its checker;
#                make chaos-selftest shows the checker catching planted bugs
#   make bench   benchmarks (fsm and node write throughput)
#   make bench-scale  one node empty and with 100,000 users, 1,000,000 sessions
#   make fuzz    each fuzz target for FUZZTIME
#   make tlsscan testssl.sh against a node's API port (8 to 20 minutes)

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s
PKGS     := ./...
# no_otel: zitadel/oidc's op package (the OpenID Connect provider) traces
# with OpenTelemetry unless built with this tag; bulwark exports no traces,
# so the tag leaves the otel SDK out of the binary (about 1 MB).
TAGS     ?= no_otel

.PHONY: all build run test deps tidy-check fmt-check vet unit bench fuzz chaos clean

all: build

build:
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/bulwark ./cmd/bulwark

run: build
	./bin/bulwark serve --dev

# deps installs what the tests need on a fresh Debian machine with Go.
deps:
	$(GO) mod download
	cd packaging/alerttest && $(GO) mod download
	$(MAKE) deps-tpm

# deps-tpm installs what the tests run besides Go, if missing: swtpm (a
# software TPM for the black-box TPM tests), systemd-analyze (make
# systemd-check), dpkg-deb (the packaging test) and chromium (the browser
# test of the login and account pages, cmd/bulwark/blackbox_browser_test.go).
# It uses apt-get, so it runs as root, as CI does.
.PHONY: deps-tpm
deps-tpm:
	@missing=""; \
	command -v swtpm >/dev/null || missing="$$missing swtpm swtpm-tools"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v dpkg-deb >/dev/null || missing="$$missing dpkg"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# tidy-check: go.mod and go.sum are what `go mod tidy` makes of the
# imports (a direct import is not marked indirect, no stale sums). It
# fails with the diff, which `go mod tidy` applies.
tidy-check:
	@out=$$($(GO) mod tidy -diff 2>&1); rc=$$?; \
	if [ $$rc -ne 0 ] || [ -n "$$out" ]; then \
		echo "go.mod/go.sum are not tidy (run: go mod tidy):"; echo "$$out"; exit 1; \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet -tags '$(TAGS)' $(PKGS)

unit:
	$(GO) test -race -count=1 -tags '$(TAGS)' -timeout 12m $(PKGS)
	# the generic argon2 code that arm64 and other platforms run
	$(GO) test -count=1 -tags purego ./authcore/internal/argon2

test: deps tidy-check fmt-check vet systemd-check unit chaos-short alerts-check

# chaos-short: the nemesis and its checker for about a minute (15 faults,
# cmd/bulwark/chaos_test.go); make chaos runs it in full.
.PHONY: chaos-short
chaos-short:
	BULWARK_CHAOS_RUN=short $(GO) test -count=1 -timeout 5m -run '^TestChaos$$' ./cmd/bulwark

# alerts-check: packaging/alerts.yml parsed by Prometheus' rule parser and
# each alert fired (and kept quiet) by its own series in Prometheus' PromQL
# engine. A module of its own (packaging/alerttest), so bulwark's go.mod
# does not take github.com/prometheus/prometheus; go vet, go mod tidy and
# go test ./... of the main module leave it out.
.PHONY: alerts-check
alerts-check:
	cd packaging/alerttest && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) test -count=1 ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 5000x -count 5 ./fsm ./node
	# one sweep v2 over a million lockout records, held to a few ms (fsm/sweep_test.go)
	BULWARK_SWEEP_RECORDS=1000000 $(GO) test -count=1 -v -run '^TestSweepMillionLockouts$$' ./fsm
	$(GO) run ./cmd/bulwark-bench --bin bin/bulwark --cluster

# bench-quick: the load benchmark with 1 s phases, a smoke run for CI.
.PHONY: bench-quick
bench-quick: build
	$(GO) run ./cmd/bulwark-bench --bin bin/bulwark --quick

# bench-scale: the node empty and then with SCALE_USERS users and
# SCALE_SESSIONS live sessions (seeded by replicated commands applied
# through fsm into a backup the node restores; about 4 GB of disk in
# $$TMPDIR at the defaults): start-up, memory, snapshot, catch-up, and
# logins, refreshes and /v1/me as ratios of the empty node's, measured in
# turns. Writes bench-results/bench-scale.json.
SCALE_USERS    ?= 100000
SCALE_SESSIONS ?= 1000000
.PHONY: bench-scale
bench-scale: build
	$(GO) run ./cmd/bulwark-bench --bin bin/bulwark --scale --scale-users $(SCALE_USERS) --scale-sessions $(SCALE_SESSIONS)

# chaos: the three-process failover measurements in full, without -race,
# on a quiet machine: five kill -9 trials of the leader (median printed),
# and five graceful (SIGTERM) leader stops, each failing if logins on a
# survivor stall over 100 ms. make test runs one trial of each with a
# loose bound.
#
# It then runs the nemesis with the linearizability checker in full
# (cmd/bulwark/chaos_test.go: 60 faults, at most 6 minutes of faults):
# kill -9, SIGSTOP pauses, cuts and slow links on the cluster port, a
# workload of logins, refreshes, logouts, session deletes, password
# changes and disables, checked with porcupine; it fails on any anomaly.
chaos:
	BULWARK_CHAOS=1 $(GO) test -count=1 -v -run 'TestBlackBoxCluster(Failover|GracefulLeaderStop|LockoutBound)' ./cmd/bulwark
	BULWARK_CHAOS_RUN=full $(GO) test -count=1 -v -timeout 10m -run '^TestChaos$$' ./cmd/bulwark

# chaos-selftest: the checker catches each bug planted by a build tag
# (authcore/chaosbug_*.go): a revoked session accepted, no lockout
# reservation, a revocation acknowledged before it commits. Each run
# fails unless the checker reports an anomaly.
.PHONY: chaos-selftest
chaos-selftest:
	for bug in revocation lockout ackearly; do \
		BULWARK_CHAOS_RUN=short BULWARK_CHAOS_BUG=$$bug $(GO) test -count=1 -v -timeout 10m -run '^TestChaos$$' ./cmd/bulwark || exit 1; \
	done

# oidc-interop: a relying party nobody here wrote, oauth2-proxy, with
# bulwark as its --provider=oidc in front of a test upstream: a browser
# signs in through bulwark's login form and reaches the upstream as the
# user (cmd/bulwark/interop_oauth2proxy_test.go). The proxy is built once
# into bin/ with go install, outside bulwark's go.mod (about 4 minutes on
# 2 cores); the test itself takes under a minute, so once the proxy is
# built make test runs it too (and skips it before).
OAUTH2_PROXY_VERSION ?= v7.15.6
OAUTH2_PROXY         := bin/oauth2-proxy-$(OAUTH2_PROXY_VERSION)

.PHONY: oidc-interop
oidc-interop: $(OAUTH2_PROXY)
	BULWARK_OAUTH2_PROXY=$(CURDIR)/$(OAUTH2_PROXY) $(GO) test -count=1 -tags '$(TAGS)' -v -run '^TestInteropOAuth2Proxy$$' ./cmd/bulwark

$(OAUTH2_PROXY):
	mkdir -p bin/oauth2-proxy-build
	GOBIN=$(CURDIR)/bin/oauth2-proxy-build $(GO) install github.com/oauth2-proxy/oauth2-proxy/v7@$(OAUTH2_PROXY_VERSION)
	mv bin/oauth2-proxy-build/oauth2-proxy $@

# fuzz: every Fuzz target of the module, found by go test -list so that
# none is forgotten, each for FUZZTIME, one after another; it fails if any
# found a crasher (kept in <pkg>/testdata/fuzz/<Target>/: commit it with
# its fix, and make test runs it from then on). FUZZ narrows the run to
# the targets whose name matches a regexp (make fuzz FUZZ=Join). A new
# interesting input is minimized for at most FUZZMINIMIZE runs: a target
# that drives a live node sees its background goroutines' coverage as new
# inputs, and the default minute of minimizing each would leave it idle.
FUZZ         ?= .
FUZZMINIMIZE ?= 100x

.PHONY: fuzz-list
fuzz-list:
	@$(GO) test -list '^Fuzz' $(PKGS) | awk '/^Fuzz/ { n[++k] = $$1; next } /^ok/ { for (i = 1; i <= k; i++) print $$2, n[i]; k = 0 } /^FAIL/ { bad = 1 } END { exit bad }'

fuzz:
	@list=$$($(MAKE) -s fuzz-list) && [ -n "$$list" ] || { echo "fuzz: cannot list the targets"; exit 1; }; \
	echo "$$list" | awk -v re='$(FUZZ)' '$$2 ~ re' | { failed=""; \
	while read pkg name; do \
		echo "== $$name ($$pkg), $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg \
			|| failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashers in:$$failed"; exit 1; fi; }

# tlsscan: Debian's testssl.sh (installed with apt-get when missing, as
# deps-tpm installs swtpm) against the API port of a node the test starts,
# its CA added, on loopback only (no DNS, no CRL or OCSP fetches): once
# with the defaults (TLS 1.3 only) and once with api.tls_min_version =
# "1.2". It fails on any finding of MEDIUM or above, none waived, and
# unless the certificate names the node's CRL URL
# (cmd/bulwark/blackbox_testssl_test.go).
# Too slow for make test: testssl.sh runs for minutes.
.PHONY: tlsscan
tlsscan:
	@command -v testssl >/dev/null || command -v testssl.sh >/dev/null || { \
		echo "installing: testssl.sh"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh; }
	BULWARK_TLSSCAN=1 $(GO) test -count=1 -timeout 40m -tags '$(TAGS)' -v -run '^TestTestsslScan$$' ./cmd/bulwark

# systemd-check: systemd-analyze verify of systemd/bulwark.service (and
# each example drop-in), and its offline security exposure at most 1.5.
.PHONY: systemd-check
systemd-check:
	sh systemd/check.sh

# package: dist/*.deb and dist/*.rpm with nfpm (a Go tool of this module).
# release: the packages, a tarball, a CycloneDX SBOM and SHA256SUMS.
# Both are reproducible: see packaging/build.sh.
.PHONY: package release
package:
	GO='$(GO)' VERSION='$(VERSION)' sh packaging/build.sh package

release:
	GO='$(GO)' VERSION='$(VERSION)' sh packaging/build.sh release

clean:
	rm -rf bin dist
