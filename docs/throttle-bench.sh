#!/usr/bin/env bash
# Measures package throttle next to Redis and prints a Markdown report (the
# "Login throttling" section of docs/benchmarks.md): Limiter.Allow on three
# in-process nodes against INCR + EXPIRE NX through go-redis on a
# redis-server of its own (in memory, free port), then POST /login of
# three examples/login processes with and without limits. Extra arguments
# go to `go run ./examples/throttlebench` (see its -h), for example:
#
#   docs/throttle-bench.sh -calls 5000 -concurrency 32 -duration 5s
#
# redis-server is installed from Debian's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
	echo "throttle-bench.sh: installing redis-server from Debian's packages" >&2
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server
fi
exec go run ./examples/throttlebench "$@"
