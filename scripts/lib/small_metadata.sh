# Sourced by the test scripts: write an upstream-layout metadata directory holding the first
# N lines of a version's urls.txt and the labels and tags of those images, so that a test can
# run the real files' quirks (blank lines, sizes, providers) without a whole version.
#
#   small_metadata SRC_DIR N DEST_DIR
small_metadata() {
    local src=$1 n=$2 dest=$3
    mkdir -p "$dest"
    head -n "$n" "$src/urls.txt" >"$dest/urls.txt"
    # labels.csv: the header, then rows whose image id (NNNNNNNN.jpg) is below N.
    awk -v n="$n" 'NR == 1 || substr($0, 1, 8) + 0 < n' "$src/labels.csv" >"$dest/labels.csv"
    awk -v n="$n" 'substr($0, 1, 8) + 0 < n' "$src/original_tags.txt" >"$dest/original_tags.txt"
    cp "$src/labels.metadata.en.txt" "$src/labels.metadata.ja.txt" "$dest/"
}
