#!/usr/bin/env bash
# libFuzzer targets (tests/fuzz/fuzz_*.c) built with clang -fsanitize=fuzzer,address,undefined
# and run for a bounded time each on a copy of their seed corpus (tests/fuzz/corpus/<target>).
#   tests/fuzz/run.sh                 every target, SYNCRELAY_FUZZ_SECONDS each (default 45)
#   SYNCRELAY_FUZZ_SECONDS=3600 tests/fuzz/run.sh push_body     one target, longer
# Without clang it prints a notice and exits 0. A crash or failed assertion exits non-zero,
# leaving the input that caused it in the work directory (SYNCRELAY_FUZZ_DIR, default
# build-fuzz/). Prints the executions per target.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${SYNCRELAY_FUZZ_DIR:-$ROOT/build-fuzz}
SECONDS_EACH=${SYNCRELAY_FUZZ_SECONDS:-45}
CC=${FUZZ_CC:-$(command -v clang || command -v clang-14 || true)}
TARGETS=${*:-"push_body codec schema route jscan"}

say() { printf 'fuzz: %s\n' "$*" >&2; }

if [ -z "$CC" ]; then
	say "clang not found: fuzz targets skipped (install clang, e.g. clang-14 and libclang-rt-14-dev)"
	exit 0
fi
mkdir -p "$OUT/obj"
FLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
INC="-I$ROOT/client/include -I$ROOT/client -I$ROOT/server $(pkg-config --cflags jansson libmicrohttpd libpq gnutls)"
LIBS="$(pkg-config --libs jansson libmicrohttpd libpq libcrypto gnutls) -lpthread -lm"

# the relay's and the codec's sources, once, instrumented for coverage
cmake -DOUT="$OUT/migrations_gen.c" -DFILES="$(ls "$ROOT"/schema/*.sql | sort | paste -sd'|')" \
	-P "$ROOT/server/embed_migrations.cmake" >/dev/null
OBJS=()
for src in "$ROOT"/client/codec.c "$ROOT"/client/schema_model.c "$ROOT"/server/*.c "$OUT/migrations_gen.c"; do
	case $(basename "$src") in main.c) continue ;; esac
	obj="$OUT/obj/$(basename "$src" .c).o"
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then
		$CC $FLAGS -fsanitize=fuzzer-no-link $INC -c "$src" -o "$obj"
	fi
	OBJS+=("$obj")
done

status=0
for t in $TARGETS; do
	exe="$OUT/fuzz_$t"
	$CC $FLAGS -fsanitize=fuzzer $INC "$ROOT/tests/fuzz/fuzz_$t.c" "${OBJS[@]}" $LIBS -o "$exe"
	work="$OUT/corpus_$t"
	mkdir -p "$work"
	cp -n "$ROOT/tests/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
	log="$OUT/fuzz_$t.log"
	if (cd "$OUT" && "$exe" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 \
		-print_final_stats=1 "$work" >"$log" 2>&1); then
		runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
		say "$t: clean, $runs executions in ${SECONDS_EACH} s ($(ls "$work" | wc -l) corpus inputs)"
	else
		say "$t: FAILED; see $log and the crash-* input in $OUT"
		tail -n 40 "$log" >&2
		status=1
	fi
done
exit $status
