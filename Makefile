# touchstream: run `make` or `make help` for the list of targets.
SHELL := bash
.DEFAULT_GOAL := help

MODULES    := schemas events projections services testkit deploy
PKGS       := $(addprefix ./,$(addsuffix /...,$(MODULES)))
DATA_DIR   ?= .data
BIN        := bin/touchstream
TEST_FLAGS ?= -count=1 -timeout 15m
FUZZ_SHORT ?= 3s
FUZZ_LONG  ?= 2m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

.PHONY: deps
deps: ## download the Go modules of every workspace module
	@for m in $(MODULES); do (cd $$m && go mod download); done

.PHONY: postgres
postgres: ## make sure PostgreSQL answers (start or install it if needed; honours DATABASE_URL)
	@scripts/ensure-postgres.sh

.PHONY: chromium
chromium: ## make sure Debian's headless Chromium is installed (the console's browser tests)
	@scripts/ensure-chromium.sh

.PHONY: build
build: deps ## build the touchstream binary into bin/
	go build -o $(BIN) ./services/cmd/touchstream

.PHONY: run
run: build postgres ## start everything on an embedded default, with the simulator feeding traffic
	$(BIN) run --data-dir $(DATA_DIR) --deploy-dir deploy

.PHONY: test
test: deps postgres chromium ## run every test against real PostgreSQL, embedded JetStream and headless Chromium, then a short fuzz of every target
	go vet $(PKGS)
	go test $(TEST_FLAGS) $$(go list $(PKGS) | grep -v /internal/faults$$)
	@# The fault tests print the counts they assert (acknowledged, stored, applied).
	set -o pipefail; go test $(TEST_FLAGS) -v ./services/internal/faults/ | grep -v '^=== '
	scripts/fuzz.sh $(FUZZ_SHORT)

.PHONY: race
race: deps postgres ## run the tests with the race detector
	go test -race $(TEST_FLAGS) $(PKGS)

.PHONY: fuzz
fuzz: deps ## run every fuzz target longer (FUZZ_LONG each, default 2m)
	scripts/fuzz.sh $(FUZZ_LONG)

.PHONY: bench
bench: build postgres chromium ## measure throughput and latency; prints tables beside this machine's raw limits
	$(BIN) bench --deploy-dir deploy

.PHONY: lint
lint: deps ## gofmt, go vet and staticcheck over every module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
	go run $(STATICCHECK) $(PKGS)

.PHONY: clean
clean: ## remove build output and the local data directory
	rm -rf bin $(DATA_DIR)
