#!/bin/sh
# Installs the build into a temporary prefix, then checks what a C user of the library
# sees: the .pc and the CMake package config point into that prefix, an example program
# builds with pkg-config and runs, and libsyncrelay.so exports only sr_* symbols.
# usage: install_check.sh BUILD_DIR SOURCE_DIR
set -eu
BUILD=$1
SRC=$2
P=$(mktemp -d /tmp/syncrelay-install-XXXXXX)
trap 'rm -rf "$P"' EXIT
fail() { echo "install_check: $*" >&2; exit 1; }

cmake --install "$BUILD" --prefix "$P" >/dev/null || fail "cmake --install failed"
PC=$(find "$P" -name syncrelay.pc | head -n1)
[ -n "$PC" ] || fail "no syncrelay.pc under $P"
export PKG_CONFIG_PATH=$(dirname "$PC")
LIBDIR=$(pkg-config --variable=libdir syncrelay)
INCDIR=$(pkg-config --variable=includedir syncrelay)
[ -f "$LIBDIR/libsyncrelay.so" ] || fail "the .pc's libdir $LIBDIR holds no libsyncrelay.so (prefix $P)"
[ -f "$INCDIR/syncrelay.h" ] || fail "the .pc's includedir $INCDIR holds no syncrelay.h (prefix $P)"
case $(cd "$LIBDIR" && pwd -P) in "$(cd "$P" && pwd -P)"/*) ;; *) fail "libdir $LIBDIR is not under the prefix $P";; esac
[ -f "$LIBDIR/cmake/syncrelay/syncrelayConfig.cmake" ] || fail "no CMake package config under $LIBDIR/cmake"
grep -q '_IMPORT_PREFIX' "$LIBDIR/cmake/syncrelay/syncrelayTargets.cmake" || fail "the CMake targets file is not relocatable"

# the example, as a user builds it (with the sanitizers when the library was built with them)
SAN=""
if ldd "$LIBDIR/libsyncrelay.so" | grep -q libasan; then SAN="-fsanitize=address,undefined"; fi
cc $SAN -Wall -Wextra -Werror -o "$P/example" "$SRC/tests/example/example.c" $(pkg-config --cflags --libs syncrelay) \
	|| fail "the example does not build with pkg-config"
OUT=$(LD_LIBRARY_PATH="$LIBDIR" "$P/example" "$P/store.db") || fail "the example failed: $OUT"
echo "$OUT" | grep -q '^libsyncrelay [0-9]' || fail "the example printed no version: $OUT"
echo "$OUT" | grep -q '"state"' || fail "the example printed no status: $OUT"
# it ran against the installed library, not the build tree's
LD_LIBRARY_PATH="$LIBDIR" ldd "$P/example" | grep -q "$LIBDIR/libsyncrelay.so" || fail "the example did not link the installed library"

# the public header stands alone: only syncrelay.h is installed, and it includes nothing but
# the C library's headers
[ "$(ls "$INCDIR" | grep -c syncrelay)" = 1 ] || fail "more than syncrelay.h installed: $(ls "$INCDIR")"
INC=$(grep -E '^[[:space:]]*#[[:space:]]*include' "$INCDIR/syncrelay.h" | grep -v '<stdint.h>' || true)
[ -z "$INC" ] || fail "syncrelay.h includes more than <stdint.h>: $INC"
echo '#include <syncrelay.h>' | cc -Wall -Werror -fsyntax-only -x c -I"$INCDIR" - || fail "syncrelay.h does not compile on its own"

# only the public API is exported: exactly the functions the header declares
BAD=$(nm -D --defined-only "$LIBDIR/libsyncrelay.so" | awk '{print $3}' | grep -v '^sr_' || true)
[ -z "$BAD" ] || fail "libsyncrelay.so exports symbols outside sr_*: $(echo $BAD | tr '\n' ' ')"
nm -D --defined-only "$LIBDIR/libsyncrelay.so" | awk '{print $3}' | sort >"$P/exported"
grep -oE '\bsr_[a-z_]+\(' "$INCDIR/syncrelay.h" | tr -d '(' | sort -u >"$P/declared"
EXTRA=$(comm -23 "$P/exported" "$P/declared")
[ -z "$EXTRA" ] || fail "libsyncrelay.so exports what syncrelay.h does not declare: $(echo $EXTRA | tr '\n' ' ')"
MISSING=$(comm -13 "$P/exported" "$P/declared")
[ -z "$MISSING" ] || fail "syncrelay.h declares what libsyncrelay.so does not export: $(echo $MISSING | tr '\n' ' ')"
N=$(wc -l <"$P/exported")
echo "install_check: prefix $P, .pc libdir $LIBDIR, example ran, $N exported symbols, exactly the header's"
