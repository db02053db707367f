#!/usr/bin/env bash
# The Citus part of the suite: syncrelay on a distributed PostgreSQL (a coordinator and two
# workers on this machine), as README section "Past one database server" describes.
#   tests/citus.sh build         build and install Citus into the machine's PostgreSQL 15 from
#                                ../shared/vendor/citus-13.2.2.tar.gz, only when it is missing
#   tests/citus.sh test BUILDDIR the same, then start the three nodes, run the ctest label
#                                "citus" of BUILDDIR against them, and stop them
# When neither an installed Citus nor the tarball is there (a fresh clone without ../shared),
# the Citus part is skipped with a notice and the command exits 0.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-}
PGBIN=/usr/lib/postgresql/15/bin
TARBALL="$ROOT/../shared/vendor/citus-13.2.2.tar.gz"
BUILD_PACKAGES="postgresql-server-dev-15 liblz4-dev libzstd-dev libkrb5-dev libssl-dev libselinux1-dev
libxslt1-dev libpam0g-dev libreadline-dev libcurl4-openssl-dev autoconf flex bison"
WORK=""
NODES=()

say() { printf 'citus: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

citus_installed() {
	local lib
	lib=$("$PGBIN/pg_config" --pkglibdir 2>/dev/null) || return 1
	[ -f "$lib/citus.so" ]
}

install_build_deps() {
	local missing=()
	for p in $BUILD_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages to build Citus: ${missing[*]} (run as root, or install them)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# the headers of the server that runs: a newer postgresql-server-dev-15 upgrades
	# postgresql-15 under clusters already running, whose binary no longer matches its modules
	local ver i
	ver=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
	if [ -n "$ver" ] && apt-cache show "postgresql-server-dev-15=$ver" >/dev/null 2>&1; then
		for i in "${!missing[@]}"; do
			[ "${missing[$i]}" = postgresql-server-dev-15 ] && missing[$i]="postgresql-server-dev-15=$ver"
		done
	fi
	say "installing ${missing[*]}"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Returns 0 when Citus is (now) installed, 1 when it cannot be had here (skip).
ensure_citus() {
	citus_installed && return 0
	if [ ! -f "$TARBALL" ]; then
		say "SKIPPED: Citus is not installed and $TARBALL is absent"
		return 1
	fi
	install_build_deps
	[ -x "$PGBIN/pg_config" ] || die "$PGBIN/pg_config not found (postgresql-server-dev-15)"
	local src start
	src=$(mktemp -d /tmp/citus-build.XXXXXX)
	start=$(date +%s)
	say "building Citus from $TARBALL in $src (make -j2; about ten minutes)"
	tar -xzf "$TARBALL" -C "$src"
	src="$src/citus-13.2.2"
	# Debian's 15.20 headers declare have_createdb_privilege(), which Citus 13.2.2 defines
	# again as a static inline for PostgreSQL 15; 15.18 servers do not export it. Citus's
	# copy is renamed, so that the build works with either headers and either server.
	sed -i -e 's/^have_createdb_privilege(void)$/citus_have_createdb_privilege(void)/' \
		-e 's/^typedef bool TU_UpdateIndexes;$/#define have_createdb_privilege citus_have_createdb_privilege\n&/' \
		"$src/src/include/pg_version_compat.h"
	grep -q '^#define have_createdb_privilege citus_have_createdb_privilege' "$src/src/include/pg_version_compat.h" ||
		die "the have_createdb_privilege patch no longer applies to $src/src/include/pg_version_compat.h"
	(cd "$src" && ./configure PG_CONFIG="$PGBIN/pg_config" >"$src/configure.log" 2>&1) ||
		{ tail -n 30 "$src/configure.log" >&2; die "configure failed (log: $src/configure.log)"; }
	# with_llvm=no: no JIT bitcode, which would double the build time for nothing here
	(cd "$src" && make -j2 with_llvm=no >"$src/make.log" 2>&1) ||
		{ grep -m 20 -i 'error' "$src/make.log" >&2; die "make failed (log: $src/make.log)"; }
	(cd "$src" && make install with_llvm=no >"$src/install.log" 2>&1) ||
		{ tail -n 30 "$src/install.log" >&2; die "make install failed (log: $src/install.log)"; }
	rm -rf "$(dirname "$src")"
	citus_installed || die "make install left no citus.so in $("$PGBIN/pg_config" --pkglibdir)"
	say "Citus built and installed in $(( $(date +%s) - start )) s"
}

free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	die "could not find a free port"
}

# Starts node NAME (coordinator, worker1, worker2) on a free port; its port in NODE_PORT.
start_node() {
	local name=$1 dir="$WORK/$1" tries
	mkdir -p "$dir/sock"
	[ "$(id -u)" -eq 0 ] && chown -R postgres "$dir"
	as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; die "initdb of the $name failed"; }
	for tries in 1 2 3 4 5; do
		NODE_PORT=$(free_port)
		# the suite checks the relay, not the disk: no fsyncs; prepared transactions for 2PC; a
		# maintenance worker for each of the suite's databases
		if as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 120 start -o "-c listen_addresses=127.0.0.1 \
-p $NODE_PORT -c unix_socket_directories=$dir/sock -c shared_preload_libraries=citus -c max_connections=300 \
-c max_prepared_transactions=200 -c max_worker_processes=128 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c citus.max_client_connections=250" >/dev/null; then
			NODES+=("$dir/data")
			return 0
		fi
		[ "$tries" = 5 ] && { cat "$dir/postgres.log" >&2; die "could not start the Citus $name"; }
	done
}

stop_nodes() {
	local d
	for d in "${NODES[@]}"; do
		as_pg "$PGBIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1 || true
	done
	[ -n "$WORK" ] && rm -rf "$WORK"
}

# Push rate of the relay on plain PostgreSQL (conninfo $2) and on Citus, in the same run, for
# large batches and for small ones (where the per-transaction cost of two-phase commit shows).
bench() {
	local build=$1 plain_pg=$2 plain citus size re='s/^push .*  \([0-9]*\) changes\/s.*/\1/p'
	[ -x "$build/tests/bench_push" ] || { say "no $build/tests/bench_push: no push-rate comparison"; return 0; }
	for size in "20000 1000" "4000 100"; do
		# shellcheck disable=SC2086 # two arguments
		plain=$(env -u SYNCRELAY_TEST_CITUS SYNCRELAY_TEST_PG="$plain_pg" "$build/tests/bench_push" $size | sed -n "$re")
		# shellcheck disable=SC2086
		citus=$("$build/tests/bench_push" $size | sed -n "$re")
		[ -n "$plain" ] && [ -n "$citus" ] || { say "the push benchmark printed no rate"; return 1; }
		say "push rate, ${size% *} changes in batches of ${size#* }: plain PostgreSQL $plain changes/s," \
			"Citus (coordinator + 2 workers on the same machine) $citus changes/s," \
			"ratio $(awk -v a="$citus" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')"
	done
}

case "$MODE" in
build)
	ensure_citus || true
	;;
test)
	build=${2:?usage: tests/citus.sh test BUILDDIR}
	build=$(cd "$build" && pwd)
	PLAIN_PG=${SYNCRELAY_TEST_PG:-}
	ensure_citus || exit 0
	start=$(date +%s)
	WORK=$(mktemp -d /tmp/syncrelay-citus.XXXXXX)
	chmod 755 "$WORK"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
	fi
	trap stop_nodes EXIT
	start_node coordinator
	coord=$NODE_PORT
	start_node worker1
	w1=$NODE_PORT
	start_node worker2
	w2=$NODE_PORT
	say "coordinator on port $coord, workers on ports $w1 and $w2 (sockets under $WORK)"
	export SYNCRELAY_TEST_PG="host=$WORK/coordinator/sock port=$coord user=postgres dbname=postgres"
	export SYNCRELAY_TEST_CITUS="$w1,$w2"
	(cd "$build" && ctest --output-on-failure -L citus ${CITUS_CTEST_ARGS:-})
	# the plain cluster the caller ran the rest of the suite on, for the comparison
	if [ -n "${PLAIN_PG:-}" ]; then
		bench "$build" "$PLAIN_PG" || say "the push-rate comparison failed (a figure, not a test)"
	fi
	say "Citus suite passed in $(( $(date +%s) - start )) s"
	;;
*)
	echo "usage: tests/citus.sh build | test BUILDDIR" >&2
	exit 2
	;;
esac
