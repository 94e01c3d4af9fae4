#!/usr/bin/env bash
# Self test of scripts/check-includes: a small tree that follows its rules passes; one bad
# include, and one include cycle, each make it fail with the exact message.
set -euo pipefail
script="${GPURUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/scripts/check-includes"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

mkdir -p "$tmp/tree/low" "$tmp/tree/high" "$tmp/tree/scripts"
cat > "$tmp/tree/scripts/include-rules.txt" <<'RULES'
component low   low/   :
component high  high/  : low
RULES
printf '#pragma once\n' > "$tmp/tree/low/a.hpp"
printf '#include "low/a.hpp"\n#include <vector>\n#include "generated.hpp"\n' > "$tmp/tree/high/b.cpp"

if ! out=$("$script" "$tmp/tree" 2>&1); then fail "a clean tree failed: $out"; fi

printf '#pragma once\n\n#include "high/b.hpp"\n' > "$tmp/tree/low/d.hpp"
printf '#pragma once\n' > "$tmp/tree/high/b.hpp"
if out=$("$script" "$tmp/tree" 2>/dev/null); then fail "a bad include passed"; fi
expected='low/d.hpp:3: low may not include high (high/b.hpp)'
[ "$out" = "$expected" ] || fail "bad include: expected '$expected', got '$out'"

rm "$tmp/tree/low/d.hpp"
printf '#pragma once\n#include "low/c.hpp"\n' > "$tmp/tree/low/a.hpp"
printf '#pragma once\n#include "low/a.hpp"\n' > "$tmp/tree/low/c.hpp"
if out=$("$script" "$tmp/tree" 2>/dev/null); then fail "an include cycle passed"; fi
expected='low/a.hpp:2: include cycle: low/a -> low/c -> low/a'
[ "$out" = "$expected" ] || fail "cycle: expected '$expected', got '$out'"

printf 'component low low/ : nothere\n' > "$tmp/tree/scripts/include-rules.txt"
if out=$("$script" "$tmp/tree" 2>&1); then fail "a rule naming an unknown component passed"; fi
case "$out" in *"names unknown components: nothere"*) ;; *) fail "unknown component: got '$out'" ;; esac

if [ "$failures" -gt 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "check-includes self test: 4 checks passed"
