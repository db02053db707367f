#!/usr/bin/env bash
# Development environment for syncrelay, from a clean clone on Debian 12.
#   tests/devenv.sh run    install what is missing, build, start a private PostgreSQL cluster
#                          (unless DATABASE_URL is set) and run syncrelayd in the foreground
#   tests/devenv.sh test   the same set-up, then the whole suite: once as a -Werror build
#                          (with the Citus suite, tests/citus.sh), once more under
#                          AddressSanitizer + UBSan, then the libFuzzer targets for a
#                          bounded time each (tests/fuzz/run.sh)
#   tests/devenv.sh install PREFIX
#                          install the build packages only, build Release without the tests and
#                          install into PREFIX (what docker/Dockerfile runs)
# The private cluster runs as an unprivileged user, on a free port and a private socket
# directory, and is stopped when the command ends.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-}
PACKAGES="build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libpq-dev
libcurl4-openssl-dev libssl-dev libgnutls28-dev libcriterion-dev libsqlite3-dev postgresql curl openssl faketime
dash python3 python3-yaml clang libclang-rt-14-dev"
# what the install mode (and the image's build stage) needs: no database, no test framework
BUILD_PACKAGES="build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libpq-dev
libcurl4-openssl-dev libssl-dev libgnutls28-dev libsqlite3-dev ca-certificates"
PGBIN=""
WORK=""

say() { printf 'devenv: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

install_deps() { # install_deps [PACKAGE LIST]
	local missing=() list=${1:-$PACKAGES}
	for p in $list; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "missing packages: ${missing[*]} (run as root, or install them with apt-get)"
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() { # build DIR [cmake args...]
	local dir=$1; shift
	cmake -S "$ROOT" -B "$dir" "$@" >/dev/null
	cmake --build "$dir" -j "$(nproc)" >/dev/null
}

free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	die "could not find a free port"
}

# Runs a PostgreSQL program as the unprivileged owner of the cluster.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_pg() {
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
	WORK=$(mktemp -d /tmp/syncrelay-pg.XXXXXX)
	chmod 755 "$WORK"
	mkdir -p "$WORK/data" "$WORK/sock"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
		chown -R postgres "$WORK"
	fi
	as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 ||
		{ cat "$WORK/initdb.log" >&2; die "initdb failed"; }
	local extra="" tries
	if [ "$MODE" = test ]; then
		# the suite checks the relay's commit semantics, not the disk's: skip the fsyncs
		extra="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	fi
	for tries in 1 2 3 4 5; do
		PGPORT=$(free_port)
		if as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 start \
			-o "-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories=$WORK/sock -c max_connections=300 $extra" >/dev/null; then
			break
		fi
		[ "$tries" = 5 ] && { cat "$WORK/postgres.log" >&2; die "could not start PostgreSQL"; }
	done
	export PGPORT
	export SYNCRELAY_TEST_PG="host=$WORK/sock port=$PGPORT user=postgres dbname=postgres"
	say "private PostgreSQL on port $PGPORT, socket directory $WORK/sock"
}

stop_pg() {
	if [ -n "$WORK" ] && [ -d "$WORK/data" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
		rm -rf "$WORK"
	fi
}

# The OpenAPI linters (npm) for tests/lint_openapi.sh; a machine without npm or without the
# registry skips the lint with a notice.
lint_tools() {
	local dir="$ROOT/build-ci/lint-tools"
	if [ ! -x "$dir/node_modules/.bin/spectral" ] || [ ! -x "$dir/node_modules/.bin/redocly" ]; then
		if ! command -v npm >/dev/null 2>&1; then
			say "npm is not installed: the OpenAPI lint is skipped"
			return 0
		fi
		say "installing the OpenAPI linters with npm into $dir"
		mkdir -p "$dir"
		timeout 600 npm install --no-audit --no-fund --loglevel=error --prefix "$dir" \
			@stoplight/spectral-cli@6.16.3 @redocly/cli@1.25.0 >"$dir/npm.log" 2>&1 ||
			{ say "npm could not install the linters (see $dir/npm.log): the OpenAPI lint is skipped"; return 0; }
	fi
	export SYNCRELAY_LINT_BIN="$dir/node_modules/.bin"
}

case "$MODE" in
run)
	install_deps
	build "$ROOT/build" -DCMAKE_BUILD_TYPE=Release
	if [ -z "${DATABASE_URL:-}" ]; then
		trap stop_pg EXIT
		start_pg
		as_pg "$PGBIN/createdb" -h "$WORK/sock" -p "$PGPORT" -U postgres syncrelay
		export DATABASE_URL="host=$WORK/sock port=$PGPORT user=postgres dbname=syncrelay"
	fi
	if [ -z "${SYNCRELAY_ADMIN_TOKEN:-}" ]; then
		SYNCRELAY_ADMIN_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
		export SYNCRELAY_ADMIN_TOKEN
		say "admin token (generated, shown once): $SYNCRELAY_ADMIN_TOKEN"
	fi
	# not exec: the EXIT trap must stop the private cluster after the relay stops
	"$ROOT/build/server/syncrelayd" || true
	;;
test)
	install_deps
	trap stop_pg EXIT
	start_pg
	start=$(date +%s)
	say "build with -Wall -Wextra -Werror"
	build "$ROOT/build-ci" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNCRELAY_WERROR=ON
	lint_tools
	(cd "$ROOT/build-ci" && ctest --output-on-failure -j 2 -LE citus)
	say "Citus suite (builds Citus when it is missing; skipped without it and without ../shared/vendor)"
	bash "$ROOT/tests/citus.sh" test "$ROOT/build-ci"
	say "build with AddressSanitizer + UBSan"
	build "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DSYNCRELAY_WERROR=ON -DSYNCRELAY_SANITIZE=ON
	(cd "$ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j 2 -LE citus)
	say "fuzz targets (skipped with a notice without clang; SYNCRELAY_FUZZ_SECONDS each)"
	"$ROOT/tests/fuzz/run.sh"
	say "whole suite passed twice in $(( $(date +%s) - start )) s"
	;;
install)
	prefix=${2:?usage: tests/devenv.sh install PREFIX}
	install_deps "$BUILD_PACKAGES"
	build "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DSYNCRELAY_TESTS=OFF
	cmake --install "$ROOT/build-release" --prefix "$prefix" >/dev/null
	say "installed into $prefix"
	;;
*)
	echo "usage: tests/devenv.sh run|test|install PREFIX" >&2
	exit 2
	;;
esac
