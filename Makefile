# The one test command (the README gives it): every package, race detector on, real PostgreSQL
# clusters started by the tests themselves (tests/pgtest).
.PHONY: test vet build

test:
	go test -race -count=1 -timeout 20m ./...

vet:
	go vet ./...

build:
	@if [ -d cmd/braid ]; then go build -o bin/braid ./cmd/braid; else echo "cmd/braid does not exist yet: nothing to build"; fi
