#!/usr/bin/env bash
# Runs every fuzz target in the workspace for the given time each (default 3s).
#   scripts/fuzz.sh 3s     the short run inside `make test`
#   scripts/fuzz.sh 2m     `make fuzz`
# The doors' targets (the gateway's HTTP ingest and strict JSON checks, the events
# decoders) face untrusted bytes: in a long run (1m or more each) they get
# FUZZ_DOOR_FACTOR (default 3) times as long.
# A crash leaves its input under the package's testdata/fuzz and fails the run.
set -euo pipefail
time="${1:-3s}"
factor="${FUZZ_DOOR_FACTOR:-3}"
cd "$(dirname "$0")/.."

# seconds converts a Go-style duration of one unit (90s, 2m, 1h) to seconds.
seconds() {
  case "$1" in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "fuzz: duration $1: want a number with s, m or h" >&2; exit 2 ;;
  esac
}
base=$(seconds "$time")
door_time="$time"
if [ "$base" -ge 60 ]; then
  door_time="$((base * factor))s"
fi

fail=0
count=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    count=$((count + 1))
    t="$time"
    case "$dir" in
      services/internal/gateway | events) t="$door_time" ;;
    esac
    echo "fuzz: ./$dir $target for $t"
    run() { go test "./$dir" -run '^$' -fuzz "^${target}\$" -fuzztime "$t" -parallel 2 >/tmp/fuzz.$$.log 2>&1; }
    if ! run; then
      # Go's fuzzing engine sometimes ends a short run with "context deadline
      # exceeded" and no failing input (its coordinator stopping a busy worker at the
      # deadline): that is not a finding, so run the target once more. A real failure
      # writes its input ("Failing input written") and is never retried.
      if grep -q 'context deadline exceeded' /tmp/fuzz.$$.log && ! grep -q 'Failing input written' /tmp/fuzz.$$.log; then
        echo "fuzz: ./$dir $target: the engine stopped at its deadline without a finding; running it again"
        if ! run; then
          cat /tmp/fuzz.$$.log
          fail=1
        fi
      else
        cat /tmp/fuzz.$$.log
        fail=1
      fi
    fi
  done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' schemas events projections services testkit 2>/dev/null | sort)
rm -f /tmp/fuzz.$$.log
echo "fuzz: $count targets, $([ $fail = 0 ] && echo ok || echo FAILED)"
exit $fail
