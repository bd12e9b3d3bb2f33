# Sourced by the test and benchmark scripts: start the fixture IIIF servers
# (examples/iiif_fixture.rs, already built) and collect the --rewrite arguments that point
# the real hosts at them.
#
#   start_fixture BINARY OUTFILE [fixture args...]
#
# Sets `fixture_pid` (kill it when done) and the array `rewrites`.
start_fixture() {
    local binary=$1 outfile=$2
    shift 2
    "$binary" "$@" >"$outfile" &
    fixture_pid=$!
    for _ in $(seq 100); do
        grep -q '^ready$' "$outfile" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^ready$' "$outfile" || { echo "the fixture server did not start" >&2; return 1; }
    rewrites=()
    local flag pair
    while read -r flag pair; do
        [[ "$flag" == "--rewrite" ]] && rewrites+=(--rewrite "$pair")
    done <"$outfile"
    return 0
}
