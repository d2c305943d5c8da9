#!/bin/sh
# Build the Elastic Beanstalk source bundle of a commit: the code (what .dockerignore lets
# into the image, from `git archive`, so no local data or secrets), with the Procfile,
# .ebextensions and .platform of deploy/elasticbeanstalk at its root.
#   deploy/elasticbeanstalk/bundle.sh [COMMIT] [OUT.zip]
# OUT.zip: absolute, or relative to the current directory (default:
# support-desk-<commit>.zip there); prints the bundle's absolute path.
set -eu
commit="${1:-HEAD}"
out="${2:-support-desk-$(git rev-parse --short "$commit").zip}"
case "$out" in
  /*) ;;
  *) out="$PWD/$out" ;;
esac
root="$(git rev-parse --show-toplevel)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The commit's .dockerignore rules become git pathspecs that leave out what they match
# (glob: "*" stays within a directory, "**/" spans any number, as Docker's matcher) and
# everything below it. A "!" rule re-includes paths, which these cannot express: refuse
# it rather than ship a bundle that differs from the image (tests/test_deploy.py compares
# the two).
git -C "$root" show "$commit:.dockerignore" >"$tmp/rules"
set --
while IFS= read -r line || [ -n "$line" ]; do
  rule="$(printf '%s' "$line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')"
  case "$rule" in
    '' | '#'*) continue ;;
    '!'*)
      echo "bundle.sh: .dockerignore rule $rule re-includes paths; not supported here" >&2
      exit 1
      ;;
  esac
  rule="${rule#/}"
  rule="${rule%/}"
  set -- "$@" ":(exclude,glob)$rule" ":(exclude,glob)$rule/**"
done <"$tmp/rules"
mkdir "$tmp/bundle"
git -C "$root" archive --format=tar "$commit" -- . "$@" | tar -x -C "$tmp/bundle"
# the platform's files as the commit has them (not the working tree's: a bundle of an
# older commit got today's configuration)
git -C "$root" archive --format=tar "$commit" deploy/elasticbeanstalk | tar -x -C "$tmp"
eb="$tmp/deploy/elasticbeanstalk"
cp -R "$eb/Procfile" "$eb/.ebextensions" "$eb/.platform" "$tmp/bundle/"
rm -f "$out"  # zip would add to an older bundle of the same name, not replace it
(cd "$tmp/bundle" && zip -qr "$out" .)
echo "$out"
