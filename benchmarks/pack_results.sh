#!/usr/bin/env bash
# Pack a results folder into one .tar.gz of at most LIMIT bytes (16 MiB by default, a common per-file transfer
# limit of remote machines):
#
#   bash benchmarks/pack_results.sh DIR ARCHIVE [LIMIT_BYTES]      # LIMIT_BYTES: 16777216 (16 MiB) by default
#
# Files are left out largest (compressed) first until the archive fits; a file over 8x the limit is left out
# unread (a profiler trace or memory snapshot compresses less than that). DIR/archive_manifest.txt, packed too,
# lists what was left out. DIR/summary.txt is never left out. Exit status 1 when even that does not fit.
set -euo pipefail

usage="usage: pack_results.sh DIR ARCHIVE [LIMIT_BYTES]"
dir=${1:?$usage}
archive=${2:?$usage}
limit=${3:-16777216}
[ -d "$dir" ] || { echo "pack_results: DIR: $dir is not a folder" >&2; exit 2; }
[[ $limit =~ ^[1-9][0-9]*$ ]] ||
  { echo "pack_results: LIMIT_BYTES: expected a positive integer, got $limit" >&2; exit 2; }
parent=$(cd "$dir/.." && pwd)
base=$(basename "$(cd "$dir" && pwd)")
archive_dir=$(cd "$(dirname "$archive")" && pwd)
case "$archive_dir/" in "$parent/$base/"*)
  echo "pack_results: ARCHIVE: $archive is inside DIR; put it beside DIR" >&2; exit 2 ;;
esac
archive="$archive_dir/$(basename "$archive")"
manifest="$parent/$base/archive_manifest.txt"
rm -f "$manifest"

# "compressed size<TAB>size<TAB>path" lines, largest compressed first; paths relative to the parent, so the
# archive unpacks into one folder.
mapfile -t sized < <(cd "$parent" && find "$base" -type f -printf '%s\t%p\n')
keep=() left=()
for entry in "${sized[@]}"; do
  size=${entry%%$'\t'*} path=${entry#*$'\t'}
  if [ "$size" -gt $((8 * limit)) ] && [ "$path" != "$base/summary.txt" ]; then
    left+=("$size"$'\t'"$size"$'\t'"$path")
  else
    keep+=("$(gzip -1 -c "$parent/$path" | wc -c)"$'\t'"$size"$'\t'"$path")
  fi
done
[ ${#keep[@]} -eq 0 ] || mapfile -t keep < <(printf '%s\n' "${keep[@]}" | sort -rn)

partial="$archive.partial"
trap 'rm -f "$partial"' EXIT
while :; do
  {
    echo "$(basename "$archive"): every file under $base/ except these, left out to keep it within $limit bytes:"
    for entry in "${left[@]}"; do
      rest=${entry#*$'\t'}  # size<TAB>path
      printf '  %s (%s bytes)\n' "${rest#*$'\t'}" "${rest%%$'\t'*}"
    done
    [ ${#left[@]} -gt 0 ] || echo "  (none)"
  } >"$manifest"
  (cd "$parent" && printf '%s\n' "$base/archive_manifest.txt" "${keep[@]#*$'\t'*$'\t'}" |
    tar -czf "$partial" --no-recursion --verbatim-files-from -T -)
  size=$(stat -c %s "$partial")
  [ "$size" -le "$limit" ] && break
  drop=-1  # the largest kept file other than summary.txt
  for i in "${!keep[@]}"; do
    if [ "${keep[i]#*$'\t'*$'\t'}" != "$base/summary.txt" ]; then drop=$i; break; fi
  done
  if [ "$drop" -lt 0 ]; then
    echo "pack_results: even $base/summary.txt alone makes $size bytes, over the limit of $limit" >&2
    exit 1
  fi
  left+=("${keep[drop]}")
  unset 'keep[drop]'
  keep=("${keep[@]}")
done
mv "$partial" "$archive"
echo "wrote $archive ($size bytes; $((${#keep[@]} + 1)) files, ${#left[@]} left out: see $base/archive_manifest.txt)"
