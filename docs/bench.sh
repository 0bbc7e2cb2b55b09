#!/usr/bin/env bash
# Runs the benchmark comparison and writes docs/benchmarks.md: the
# micro-benchmarks (go test -bench), then the same HTTP workload against
# sessionmesh (examples/login), scs + Redis and scs memstore
# (examples/scslogin) behind the same round-robin proxy, with CPU profiles of
# the sessionmesh nodes. Takes a few minutes. Extra arguments go to
# `go run ./examples/loadgen -compare` (see its -h), for example:
#
#   docs/bench.sh -duration 5s -targets mesh3,scs-redis
#
# redis-server is installed from Debian's packages when it is missing (the
# package may also start a system Redis on port 6379; the comparison starts
# its own, in memory only, on a free port).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
	echo "bench.sh: installing redis-server from Debian's packages" >&2
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server
fi
exec go run ./examples/loadgen -compare -out docs/benchmarks.md "$@"
