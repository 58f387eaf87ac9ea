GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-short test-rules demo lint bench bench-quick fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/sersyncd ./cmd/sersyncd

STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck

# Fuzz budgets are execution counts (about 10 s each here), not durations: a
# duration races Go 1.26's fuzz coordinator at its deadline and can fail
# with a bare "context deadline exceeded" (golang/go#75804, fixed in 1.27).
# Each fuzz target for a short while, then the unit and integration tests
# (real rsync daemons and sshd on 127.0.0.1) with the race detector.
test: lint test-rules
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=150000x ./internal/config/
	$(GO) test -run='^$$' -fuzz=FuzzExcluded -fuzztime=120000x ./internal/filter/
	$(GO) test -run='^$$' -fuzz=FuzzRecordDecode -fuzztime=500000x ./internal/queue/
	$(GO) test -race -count=1 -timeout 12m ./...

# The alert rules in docs/monitoring against their unit tests. promtool
# comes with Debian's prometheus package (.ci/run installs it).
test-rules:
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules docs/monitoring/sersyncd.rules.yml && \
		promtool test rules docs/monitoring/sersyncd.rules.test.yml; \
	else \
		echo "test-rules: skipped: no promtool on PATH (apt-get install prometheus)"; \
	fi

test-short:
	$(GO) test -count=1 -short ./...

demo:
	./scripts/demo.sh

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) ./...

fuzz:
	$(GO) test -run=^$$ -fuzz=FuzzParse -fuzztime=300000x ./internal/config/
	$(GO) test -run=^$$ -fuzz=FuzzExcluded -fuzztime=240000x ./internal/filter/
	$(GO) test -run=^$$ -fuzz=FuzzRecordDecode -fuzztime=1000000x ./internal/queue/

# Benchmarks against lsyncd, the inotifywait|rsync script and the limit
# (installs rsync, lsyncd, inotify-tools with apt-get when missing; ~30-40 min).
bench: build
	BENCH_COMMAND="make bench" $(GO) run ./scripts/bench -bin bin/sersyncd -out docs/BENCHMARKS.md

# A subset in under 2 minutes; prints the table and writes docs/BENCHMARKS-quick.md.
bench-quick: build
	BENCH_COMMAND="make bench-quick" $(GO) run ./scripts/bench -quick -bin bin/sersyncd -out docs/BENCHMARKS-quick.md

clean:
	rm -rf bin
