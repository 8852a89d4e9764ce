#!/usr/bin/env bash
# Checks that tiny_http 0.12.0 as published on crates.io, less what we do not ship, plus the
# numbered patches in vendor/tiny_http-patches/ applied in order, gives exactly the files git
# tracks under vendor/tiny_http/ (STATUSSENTRY-PATCH.md, our own notes, aside). So a change
# to the vendored crate is reviewable as a patch, and moving to a newer tiny_http means
# applying the series to it.
#
# The published crate comes from cargo's download cache, or is downloaded by cargo through a
# throwaway manifest (the workspace patches tiny_http, so cargo never fetches it otherwise);
# either way its SHA-256 must be the one crates.io's index records for 0.12.0.
set -euo pipefail
cd "$(dirname "$0")/.."

crate=tiny_http-0.12.0
sha256=389915df6413a2e74fb181895f933386023c71110878cd0825588928e64cdc82
patches=vendor/tiny_http-patches

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
find_crate() { find "$cache" -maxdepth 2 -name "$crate.crate" -print -quit 2>/dev/null || true; }
file=$(find_crate)
if [ -z "$file" ]; then
  mkdir -p "$work/fetch/src"
  printf '[package]\nname = "fetch-tiny-http"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\ntiny_http = "=0.12.0"\n' \
    >"$work/fetch/Cargo.toml"
  : >"$work/fetch/src/lib.rs"
  cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
  file=$(find_crate)
fi
if [ -z "$file" ]; then
  echo "check-patches: cannot find or download $crate.crate" >&2
  exit 1
fi
echo "$sha256  $file" | sha256sum --check --quiet -

tar -xzf "$file" -C "$work"
upstream="$work/$crate"
# Removed from the crate as published (STATUSSENTRY-PATCH.md): its tests, benches and
# examples (their dev-dependencies go in patch 0000), and the files cargo packages beside
# the sources.
rm -rf "$upstream"/{tests,benches,examples,.cargo_vcs_info.json,.gitattributes,.github,.gitignore,Cargo.lock,Cargo.toml.orig}

# A repository of its own, so that `git apply` applies relative to it (never to an enclosing
# repository) and refuses any patch that does not apply exactly.
git -C "$upstream" init --quiet
for patch in "$patches"/*.patch; do
  if ! git -C "$upstream" apply --whitespace=nowarn "$PWD/$patch"; then
    echo "check-patches: $patch does not apply to $crate plus the patches before it" >&2
    exit 1
  fi
done
rm -rf "$upstream/.git"

# The tracked files as they are in the work tree, so an uncommitted edit is caught too, and
# build products (vendor/tiny_http/target, Cargo.lock) are not compared.
ours="$work/ours"
mkdir -p "$ours"
git ls-files -z vendor/tiny_http | xargs -0 cp --parents -t "$ours"
rm -f "$ours/vendor/tiny_http/STATUSSENTRY-PATCH.md"

if ! diff -ru "$upstream" "$ours/vendor/tiny_http"; then
  echo "check-patches: vendor/tiny_http differs from $crate plus $patches/*.patch (above)" >&2
  echo "check-patches: a change to the vendored crate needs its patch in $patches" >&2
  exit 1
fi
echo "check-patches: vendor/tiny_http is $crate plus $(ls "$patches"/*.patch | wc -l) patches"
