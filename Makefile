# agentbox — see README.md.
# `make demo` and `make test` work on a fresh Debian 12 machine as root.

CARGO ?= cargo
# End-to-end tests start private containerds and gVisor sandboxes: two at a
# time is what a 2-core machine takes without timing out.
E2E_THREADS ?= 2

.PHONY: all deps build release test lint unit e2e test-matrix test-flood demo bench bench-policy bench-secrets bench-shim bench-activity bench-node node-image runtimeclass mutants soak bench-net bench-workload clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

release: deps
	$(CARGO) build --release -p agentbox-shim -p agentbox-policy -p agentbox-node

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Unit, golden, property and in-process tests (no root needed), then the
# end-to-end suites against real containerd + runc + runsc (root).
unit:
	$(CARGO) test --workspace --exclude agentbox-e2e --tests --no-fail-fast

e2e: build
	$(CARGO) test -p agentbox-e2e --tests --no-fail-fast -- --test-threads=$(E2E_THREADS)

test: deps lint build unit e2e

# Every containerd version (1.6 from Debian 12, 1.7 from trixie, 2.1 from
# sid) through both backends; `make test` runs the same matrix.
test-matrix: build
	$(CARGO) test -p agentbox-e2e --test agentbox_matrix -- --test-threads=$(E2E_THREADS)

# The activity audit under a flood of 100,000 file opens (make test runs 20,000).
test-flood: build
	AGENTBOX_FLOOD_OPENS=100000 $(CARGO) test -p agentbox-e2e --test agentbox_activity -- a_flood

demo: deps
	$(CARGO) build -p agentbox-shim
	$(CARGO) build -p agentbox-e2e --bin agentbox-demo
	$(CARGO) run -q -p agentbox-e2e --bin agentbox-demo

bench: bench-policy bench-secrets bench-shim bench-activity bench-node bench-net

bench-policy:
	$(CARGO) bench -p agentbox-policy --bench apply

# The secret detector: per KiB of env, rule compilation, argv redaction, and
# the same formats as a RegexSet for comparison (time and heap).
bench-secrets:
	$(CARGO) bench -p agentbox-secrets --bench detect

bench-shim: release
	$(CARGO) build --release -p agentbox-e2e --bin agentbox-bench
	$(CARGO) run --release -q -p agentbox-e2e --bin agentbox-bench

# Agent workloads (small files, archive, spawns, pipes) under runc, runc-v2 +
# runsc and agentbox with each runsc tuning; trixie's runsc (fetched into
# .work/, never installed) for comparison. Long: AGENTBOX_BENCH_RUNS rounds.
bench-workload: release
	$(CARGO) build --release -p agentbox-e2e --bin agentbox-bench-workload
	scripts/fetch-runsc.sh trixie || echo "bench-workload: no trixie runsc, Debian 12's only"
	$(CARGO) run --release -q -p agentbox-e2e --bin agentbox-bench-workload

# Reliability at full scale (RELIABILITY.md): 300 pods churned, 100 idle
# pods, a pod with 2,000 ExecSync and 200 restarts, every fault 20 times,
# against the release shim (the test harness itself in the dev profile: an
# LTO build of it costs more than it saves); prints the figures. `make test`
# runs the same scenarios at a short scale (agentbox_soak, agentbox_soak_faults).
soak: release
	AGENTBOX_SHIM_DIR=$(CURDIR)/target/release AGENTBOX_SOAK=full $(CARGO) test -p agentbox-e2e --test agentbox_soak --test agentbox_soak_faults -- --test-threads=1 --nocapture

# Pod egress: rule install, pod start with/without [network], iperf3, DNS.
bench-net: release
	$(CARGO) build --release -p agentbox-e2e --bin agentbox-netbench
	$(CARGO) run --release -q -p agentbox-e2e --bin agentbox-netbench

# The activity audit's cost: a build-like workload with it off and on, as ratios.
bench-activity: release
	$(CARGO) build --release -p agentbox-e2e --bin agentbox-activity-bench
	$(CARGO) run --release -q -p agentbox-e2e --bin agentbox-activity-bench

# The node agent: install time, the gVisor pod overhead behind the chart's
# overhead.podFixed, 20 pods at once on the installed handler (BENCHMARKS.md).
bench-node: release
	$(CARGO) build --release -p agentbox-e2e --bin agentbox-node-bench
	$(CARGO) run --release -q -p agentbox-e2e --bin agentbox-node-bench

# The node agent image (node-agent/Dockerfile, buildah) from the release build.
NODE_IMAGE ?= agentbox/agentbox-node:0.1.0
node-image: release
	scripts/build-node-image.sh target/release $(NODE_IMAGE) target/agentbox-node-image.tar

# runtimeclass/ from charts/agentbox (a test checks they agree).
runtimeclass: deps
	.work/tools/venv/bin/python scripts/gen-runtimeclass.py

# Mutation testing of the policy engine and the shim's pure modules
# (.cargo/mutants.toml); new misses fail unless mutants/allowed.txt explains
# them. Hours on 2 cores: run before a release, not in `make test`.
mutants: deps
	scripts/mutants.sh

clean:
	$(CARGO) clean
