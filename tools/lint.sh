#!/usr/bin/env bash
# Lints what changed since BASE (default: the merge base with main, else
# HEAD~1): clang-format on the changed lines, clang-tidy (.clang-tidy) on
# the changed C++ sources. Older code is brought in line when it is touched,
# so a whole-tree reformat never buries a real change.
#
#   tools/lint.sh [BASE] [--build DIR]     (DIR: a configured build tree with
#                                           compile_commands.json; default build)
# Exit status: 0 clean, 1 findings, 2 usage or setup error.
set -euo pipefail
cd "$(dirname "$0")/.."

base=""
build=build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "lint.sh: unknown option $1" >&2; exit 2 ;;
    *) base=$1; shift ;;
  esac
done
if [[ -z "${base}" ]]; then
  base=$(git merge-base HEAD main 2>/dev/null || true)
  [[ -z "${base}" || "${base}" == "$(git rev-parse HEAD)" ]] && base=HEAD~1
fi
git rev-parse --verify --quiet "${base}^{commit}" >/dev/null ||
  { echo "lint.sh: ${base} is not a commit" >&2; exit 2; }

for tool in clang-format clang-format-diff clang-tidy; do
  if ! command -v "${tool}" >/dev/null; then
    echo "== installing clang-format and clang-tidy"
    apt-get update -qq && apt-get install -y -qq clang-format clang-tidy >/dev/null
    break
  fi
done

status=0
echo "== clang-format: lines changed since $(git rev-parse --short "${base}")"
fmt=$(git diff -U0 --no-color "${base}" -- '*.c' '*.h' '*.cpp' '*.hpp' | clang-format-diff -p1)
if [[ -n "${fmt}" ]]; then
  printf '%s\n' "${fmt}"
  echo "lint.sh: the lines above are not formatted as .clang-format says" >&2
  status=1
fi

mapfile -t sources < <(git diff --name-only --diff-filter=d "${base}" -- '*.cpp')
echo "== clang-tidy: findings on changed lines of ${#sources[@]} changed C++ source(s)"
if [[ ${#sources[@]} -gt 0 ]]; then
  [[ -f "${build}/compile_commands.json" ]] ||
    { echo "lint.sh: ${build}/compile_commands.json missing; configure ${build} first" >&2; exit 2; }
  # "path:line" for every line added or changed since BASE, in any file
  # (a finding in a changed header counts too).
  changed=$(git diff -U0 --no-color "${base}" -- '*.c' '*.h' '*.cpp' '*.hpp' | awk '
    /^\+\+\+ b\// { file = substr($0, 7); next }
    /^@@/ { split($3, a, ","); start = substr(a[1], 2); n = (a[2] == "") ? 1 : a[2];
            for (i = 0; i < n; i++) print file ":" start + i }')
  root=$(pwd)/
  findings=$(clang-tidy -p "${build}" --quiet "${sources[@]}" 2>/dev/null |
    grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' |
    awk -v root="${root}" -v changed="${changed}" '
      BEGIN { n = split(changed, c, "\n"); for (i = 1; i <= n; i++) keep[c[i]] = 1 }
      { split($0, f, ":"); path = f[1]; sub("^" root, "", path);
        if ((path ":" f[2]) in keep && !seen[$0]++) print }')
  if [[ -n "${findings}" ]]; then
    printf '%s\n' "${findings}"
    echo "lint.sh: clang-tidy findings above" >&2
    status=1
  fi
fi
[[ ${status} -eq 0 ]] && echo "== lint clean"
exit "${status}"
