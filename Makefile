# watchgate: `make test` installs what the tests need and runs them all;
# `make run` serves on :8080 with the store in ./data.

# go.mod pins toolchain go1.26.11 (1.26.8's HTTP/2 server has a crash bug);
# GOTOOLCHAIN makes the go command fetch and use it whatever go is installed.
GO ?= env GOTOOLCHAIN=go1.26.11 go

# Commands the tests run, as command:debian-package pairs. `make deps`
# installs the package of each command that is missing: curl for the
# end-to-end tests, Chromium for the browser tests (test/browser), etcd for
# the etcd backend's tests (a real three-member cluster on loopback) and the
# benchmark tool, and a go command when there is none (Debian trixie's
# fetches go1.26.11 by itself).
TEST_DEPS ?= go:golang-go curl:curl chromium:chromium etcd:etcd-server

# go test flags of `make test`; the whole suite takes a few minutes on two
# loaded cores, the timeout only catches a hang.
TEST_FLAGS ?= -race -timeout 12m

FUZZTIME ?= 10s
FUZZDIRS ?= .
BENCH ?= .
BENCHPKG ?= ./...
BENCHTIME ?= 1s

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build run test vet deps fuzz bench bench-compare soak clean docker

all: build

build:
	$(GO) build -o bin/watchgate .

run:
	$(GO) run .

# deps installs (with apt-get, only when a command is missing) the Debian
# packages the tests need, then the Go modules, and h2spec (the HTTP/2
# conformance tool h2srv's tests run) into .tools.
deps:
	@missing=""; \
	for dep in $(TEST_DEPS); do \
		cmd=$${dep%%:*}; pkg=$${dep#*:}; \
		command -v "$$cmd" >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	$(GO) mod download
	@[ -x .tools/h2spec ] || GOBIN=$(CURDIR)/.tools $(GO) install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible

vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test $(TEST_FLAGS) ./...

# fuzz runs every fuzz test under FUZZDIRS (the whole repository by
# default) for FUZZTIME each.
fuzz: deps
	@set -e; \
	for f in $$(grep -rl --include='*_test.go' '^func Fuzz' $(FUZZDIRS)); do \
		pkg=$$(dirname "$$f"); pkg=./$${pkg#./}; \
		for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$f" | sed 's/^func //'); do \
			echo "== $$pkg $$fn"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) $(BENCHPKG)

# bench-compare runs every scenario of the benchmark tool against watchgate
# and a single-node etcd on loopback (about 30 minutes) and rewrites the
# generated part of BENCHMARKS.md and bench/results.
bench-compare: deps
	$(GO) run ./bench -out bench/results -update BENCHMARKS.md

# soak runs the reliability suite's long version: 100 SIGKILL cycles and at
# least 10,000 forced reconnects (about 15 minutes); see RELIABILITY.md.
soak: deps
	WATCHGATE_SOAK=1 $(GO) test -race -count=1 -timeout 3h -run 'TestReliability$$' -v ./test/reliability/

# docker builds the image (needs a Docker engine; the tests check the
# Dockerfile without one).
docker:
	docker build -t watchgate .

clean:
	rm -rf bin
