# smartos-telemetry: the two commands of the README's Quick start, and helpers.
#   make run    set up everything, then run the main job
#   make test   set up everything, then run the whole test suite
# Run as root (apt, tracing).  Slow parts are cached in $(CACHE).

CACHE ?= /var/cache/smartos-telemetry
export SMARTOS_TELEMETRY_CACHE := $(CACHE)
PYTEST_ARGS ?=

.PHONY: run test setup sandbox lint bench stack-setup stack-up stack-down

setup:
	@tools/bootstrap >/dev/null

sandbox:
	@tools/dtrace-sandbox build

run: setup
	@tools/run-main-job

lint: setup
	@"$$(tools/bootstrap --venv)/bin/ruff" check smartos_telemetry tests bench devstack

test: setup sandbox lint stack-setup
	@echo "== libdtrace tests, inside the Debian sid root with Oracle DTrace 2.0.7"
	tools/dtrace-sandbox run -- python3 -m pytest -p no:cacheprovider tests/libdtrace_real $(PYTEST_ARGS)
	@echo "== host tests (bpftrace, cgroups, fake illumos libdtrace, everything else)"
	"$$(tools/bootstrap --venv)/bin/python" -m pytest -p no:cacheprovider tests --ignore=tests/libdtrace_real $(PYTEST_ARGS)

# the local full stack (PostgreSQL, RabbitMQ, Gnocchi, both ceilometer agents)
# and its consumers' venvs (Aodh, CloudKitty: tools/consumers)
stack-setup:
	@tools/fullstack setup >/dev/null
	@tools/consumers setup >/dev/null

stack-up: setup
	@tools/fullstack up

stack-down:
	@tools/fullstack down

bench: setup sandbox
	tools/run-benchmarks
