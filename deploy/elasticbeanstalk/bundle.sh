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
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$root" archive --format=tar "$commit" | tar -x -C "$work"
rm -rf "$work/tests" "$work/bench" "$work/.ci" "$work/docs" "$work/requirements-dev.txt" \
  "$work/requirements-local.txt"
cp -R "$root/deploy/elasticbeanstalk/Procfile" "$root/deploy/elasticbeanstalk/.ebextensions" \
  "$root/deploy/elasticbeanstalk/.platform" "$work/"
rm -f "$out"  # zip would add to an older bundle of the same name, not replace it
(cd "$work" && zip -qr "$out" .)
echo "$out"
