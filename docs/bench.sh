#!/usr/bin/env bash
# Runs the benchmark comparison and writes docs/benchmarks.md: the
# micro-benchmarks (go test -bench), then the same HTTP workload against
# sessionmesh (examples/login: 3 nodes all-to-all, 3 and 5 nodes with
# -backups 1), scs + Redis, scs on an embedded NATS JetStream cluster,
# stateless encrypted cookies and scs memstore (examples/scslogin), each
# behind a stock nginx round robin and loaded by wrk, in one interleaved
# run, with CPU profiles of the sessionmesh nodes. Takes about 15 minutes.
# Extra arguments go to `go run ./examples/loadgen -compare` (see its -h),
# for example:
#
#   docs/bench.sh -duration 5s -targets mesh3,scs-redis,cookie
#   docs/bench.sh -front inprocess   # the Go client and proxy instead
#
# redis-server, nginx and wrk are installed from Debian's packages when
# missing (the packages may also start a system Redis on port 6379 and an
# nginx on port 80; the comparison starts its own on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench.sh: installing ${missing[*]} from Debian's packages" >&2
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi
PATH="$PATH:/usr/sbin"
exec go run ./examples/loadgen -compare -out docs/benchmarks.md "$@"
