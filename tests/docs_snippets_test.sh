#!/usr/bin/env bash
# Checks that the code snippets of README.md and docs/*.md are the compiled
# examples.
#
# A ```cpp block whose first line is `// examples/FILE.cpp [name]` must equal
# (after removing the common indentation) the lines between the two marker
# lines `// [name]` of examples/FILE.cpp. Blocks without such a first line
# are not checked.
#
# usage: docs_snippets_test.sh SOURCE_DIR
#        docs_snippets_test.sh SOURCE_DIR --show examples/FILE.cpp NAME

set -u

root=${1:?usage: docs_snippets_test.sh SOURCE_DIR}

# Prints stdin without its common leading indentation.
dedent() {
  awk '
    { lines[NR] = $0
      if ($0 ~ /[^ ]/) {
        match($0, /^ */)
        if (min == "" || RLENGTH < min) min = RLENGTH
      } }
    END { for (i = 1; i <= NR; ++i) print substr(lines[i], min + 1) }'
}

# Prints the region `name` of `file` (dedented); fails unless the marker
# occurs exactly twice.
region() {
  local file=$1 name=$2 count
  count=$(grep -c -x "[[:space:]]*// \[$name\]" "$file")
  if [ "$count" != 2 ]; then
    echo "$file: marker [$name] found $count times, expected 2" >&2
    return 1
  fi
  awk -v marker="// [$name]" '
    { line = $0; sub(/^[ \t]+/, "", line) }
    line == marker { inside = !inside; next }
    inside { print }' "$file" | dedent
}

if [ "${2:-}" = "--show" ]; then
  region "$root/${3:?file}" "${4:?name}"
  exit
fi

failures=0
checked=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for doc in "$root"/README.md "$root"/docs/*.md; do
  [ -e "$doc" ] || continue
  # Split the document's cpp blocks into numbered files: block.N holds the
  # body, block.N.line the line number of the opening fence.
  rm -f "$tmp"/block.*
  awk -v dir="$tmp" '
    /^```cpp[ \t]*$/ && !inside { inside = 1; ++n; out = dir "/block." n
                                  print NR > (out ".line"); printf "" > out
                                  next }
    /^```[ \t]*$/ && inside { inside = 0; next }
    inside { print > out }' "$doc"
  for block in "$tmp"/block.*; do
    case $block in *.line) continue ;; esac
    [ -e "$block" ] || continue
    line=$(cat "$block.line")
    first=$(head -n 1 "$block")
    if [[ ! $first =~ ^//\ (examples/[A-Za-z0-9_./-]+\.(cpp|hpp))\ \[([A-Za-z0-9_-]+)\][[:space:]]*$ ]]; then
      continue
    fi
    file=${BASH_REMATCH[1]}
    name=${BASH_REMATCH[3]}
    checked=$((checked + 1))
    where="${doc#"$root"/}:$line"
    if [ ! -f "$root/$file" ]; then
      echo "$where: $file does not exist"
      failures=$((failures + 1))
      continue
    fi
    if ! region "$root/$file" "$name" > "$tmp/expected"; then
      echo "$where: no region [$name] in $file"
      failures=$((failures + 1))
      continue
    fi
    tail -n +2 "$block" | dedent > "$tmp/actual"
    if ! diff -u "$tmp/expected" "$tmp/actual" > "$tmp/diff"; then
      echo "$where: snippet differs from $file [$name]:"
      sed 's/^/  /' "$tmp/diff"
      failures=$((failures + 1))
    fi
  done
done

echo "docs_snippets: $checked snippets checked, $failures failed"
[ "$checked" -gt 0 ] && [ "$failures" -eq 0 ]
