#!/bin/sh
# Copyright (c) 2026 The imsg-rs authors
#
# Permission to use, copy, modify, and distribute this software for any
# purpose with or without fee is hereby granted, provided that the above
# copyright notice and this permission notice appear in all copies.
#
# THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHORS DISCLAIM ALL WARRANTIES
# WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
# MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHORS BE LIABLE FOR
# ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
# WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
# ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
# OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.

# Builds procs.c, the C side of the process benchmark, against a copy of
# OpenBSD's imsg that you provide (it is not part of this repository):
#
#   IMSG_C_SRC=/path/to/dir-with-imsg.c-imsg-buffer.c-imsg.h benches/c/build.sh
#
# The dialect is read from imsg.h (imsgbuf_init: current, imsg.c >= 1.35;
# otherwise legacy, imsg_init/imsg_read). The program goes to
# ${IMSG_C_OUT:-target/c-bench}/procs-<dialect> and is run like the Rust
# bench: IMSG_BENCH_SCALE, IMSG_BENCH_ONLY and IMSG_BENCH_REPS work the same.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=${IMSG_C_SRC:?set IMSG_C_SRC to the directory holding imsg.c, imsg-buffer.c and imsg.h}
out=${IMSG_C_OUT:-$here/../../target/c-bench}
cc=${CC:-gcc}

for f in imsg.c imsg-buffer.c imsg.h; do
	test -f "$src/$f" || { echo "missing $src/$f" >&2; exit 1; }
done
if grep -q 'imsgbuf_init' "$src/imsg.h"; then
	dialect=current
	defs=
else
	dialect=legacy
	defs=-DIMSG_LEGACY
fi
version=$(sed -n 's/.*\$OpenBSD: imsg\.c,v \([0-9.]*\).*/\1/p' "$src/imsg.c" | head -n 1)

mkdir -p "$out"
obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
flags="-O2 -g -D_GNU_SOURCE -I$here -I$src -include $here/compat.h"
# shellcheck disable=SC2086
{
	$cc $flags -w -c "$src/imsg.c" -o "$obj/imsg.o"
	$cc $flags -w -c "$src/imsg-buffer.c" -o "$obj/imsg-buffer.o"
	$cc $flags -Wall -c "$here/compat.c" -o "$obj/compat.o"
	$cc $flags $defs -Wall -c "$here/procs.c" -o "$obj/procs.o"
	$cc -o "$out/procs-$dialect" "$obj/procs.o" "$obj/imsg.o" \
	    "$obj/imsg-buffer.o" "$obj/compat.o" \
	    -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
}
echo "$out/procs-$dialect (imsg.c ${version:-unknown version}, $dialect dialect)"
