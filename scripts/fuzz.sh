#!/usr/bin/env bash
# Runs every fuzz target in the workspace for the given time each (default 3s).
#   scripts/fuzz.sh 3s     the short run inside `make test`
#   scripts/fuzz.sh 2m     `make fuzz`
# A crash leaves its input under the package's testdata/fuzz and fails the run.
set -euo pipefail
time="${1:-3s}"
cd "$(dirname "$0")/.."
fail=0
count=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    count=$((count + 1))
    echo "fuzz: ./$dir $target for $time"
    if ! go test "./$dir" -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -parallel 2 >/tmp/fuzz.$$.log 2>&1; then
      cat /tmp/fuzz.$$.log
      fail=1
    fi
  done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' schemas events projections services testkit 2>/dev/null | sort)
rm -f /tmp/fuzz.$$.log
echo "fuzz: $count targets, $([ $fail = 0 ] && echo ok || echo FAILED)"
exit $fail
