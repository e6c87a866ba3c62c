# The one test command (the README gives it): every package, race detector on, real PostgreSQL
# clusters started by the tests themselves (tests/pgtest); then the River comparison adapter,
# a module of its own (bench/river) so that River stays out of braid's dependencies.
.PHONY: test vet build

test:
	go test -race -count=1 -timeout 20m ./...
	cd bench/river && go test -race -count=1 -timeout 10m ./...

vet:
	go vet ./...
	cd bench/river && go vet ./...

build:
	go build -o bin/braid ./cmd/braid
