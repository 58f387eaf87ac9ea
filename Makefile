GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-short test-rules package test-package demo lint bench bench-quick fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/sersyncd ./cmd/sersyncd

STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck

# Fuzz budgets are execution counts (about 10 s each here), not durations: a
# duration races Go 1.26's fuzz coordinator at its deadline and can fail
# with a bare "context deadline exceeded" (golang/go#75804, fixed in 1.27).
# Each fuzz target for a short while, then the unit and integration tests
# (real rsync daemons and sshd on 127.0.0.1) with the race detector.
test: lint test-rules test-package
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=150000x ./internal/config/
	$(GO) test -run='^$$' -fuzz=FuzzExcluded -fuzztime=120000x ./internal/filter/
	$(GO) test -run='^$$' -fuzz=FuzzParseRules -fuzztime=100000x ./internal/filter/
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

# Packages: build/sersyncd_VERSION-1_ARCH.deb and build/sersyncd-VERSION-1.ARCH.rpm
# from nfpm.yaml. nfpm is pinned and run through the Go module proxy (built
# once, then cached: about 40 s the first time here, 1 s after).
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
PKG_ARCH ?= $(shell $(GO) env GOARCH)
# v1.2.0 -> 1.2.0, v1.2.0-3-gabc -> 1.2.0+3.gabc; untagged: 0.1.0~gitDATE.HASH,
# which sorts before 0.1.0 for dpkg and rpm alike.
PKG_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && echo "$$v" | sed 's/^v//; s/-/+/; s/-/./g' || echo "0.1.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d).$$(git rev-parse --short HEAD)")
PKG_MAINTAINER ?= sersyncd maintainers <maintainers@sersyncd.invalid>
PKG_DIR := build/package

package:
	rm -rf $(PKG_DIR) build/*.deb build/*.rpm
	mkdir -p $(PKG_DIR)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_ARCH) $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(PKG_DIR)/sersyncd ./cmd/sersyncd
	sed 's#^ExecStart=/usr/local/bin/sersyncd #ExecStart=/usr/bin/sersyncd #' scripts/sersyncd.service >$(PKG_DIR)/sersyncd.service
	grep -q '^ExecStart=/usr/bin/sersyncd ' $(PKG_DIR)/sersyncd.service
	gzip -9n <docs/sersyncd.1 >$(PKG_DIR)/sersyncd.1.gz
	for p in deb rpm; do \
		PKG_ARCH="$(PKG_ARCH)" PKG_VERSION="$(PKG_VERSION)" PKG_MAINTAINER="$(PKG_MAINTAINER)" \
			$(NFPM) package --config nfpm.yaml --packager $$p --target build/ || exit 1; \
	done

# Installs the .deb with dpkg, runs it, removes it (root and dpkg only;
# skipped with a message otherwise).
test-package: package
	scripts/test-package.sh build/sersyncd_*.deb build/sersyncd-*.rpm

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
	$(GO) test -run=^$$ -fuzz=FuzzParseRules -fuzztime=200000x ./internal/filter/
	$(GO) test -run=^$$ -fuzz=FuzzRecordDecode -fuzztime=1000000x ./internal/queue/

# Benchmarks against lsyncd, the inotifywait|rsync script and the limit
# (installs rsync, lsyncd, inotify-tools with apt-get when missing; ~30-40 min).
bench: build
	BENCH_COMMAND="make bench" $(GO) run ./scripts/bench -bin bin/sersyncd -out docs/BENCHMARKS.md

# A subset in under 2 minutes; prints the table and writes docs/BENCHMARKS-quick.md.
bench-quick: build
	BENCH_COMMAND="make bench-quick" $(GO) run ./scripts/bench -quick -bin bin/sersyncd -out docs/BENCHMARKS-quick.md

clean:
	rm -rf bin build
