GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-short demo lint bench bench-quick fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/sersyncd ./cmd/sersyncd

# Unit and integration tests: real rsync daemons (and sshd) on 127.0.0.1.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...

test-short:
	$(GO) test -count=1 -short ./...

demo:
	./scripts/demo.sh

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }

fuzz:
	$(GO) test -run=^$$ -fuzz=FuzzParse -fuzztime=20s ./internal/config/
	$(GO) test -run=^$$ -fuzz=FuzzExcluded -fuzztime=20s ./internal/filter/

clean:
	rm -rf bin
