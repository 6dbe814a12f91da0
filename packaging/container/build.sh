#!/usr/bin/env bash
# Build the jellydemon container image, with nothing pulled from a registry: a statically
# linked binary (glibc, -C target-feature=+crt-static) in a FROM scratch image, with the build
# host's CA roots for an https:// Jellyfin.
#
#   packaging/container/build.sh [IMAGE]      # default: localhost/jellydemon:latest
#
# Needs what `cargo build` needs (Rust, see rust-version in Cargo.toml; gcc), the CA roots at
# /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates; or set CA_BUNDLE), and podman
# or docker (or set CONTAINER_ENGINE).
set -euo pipefail
cd "$(dirname "$0")/../.."

image="${1:-localhost/jellydemon:latest}"
engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}"
ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -z "$engine" ]; then
  echo "error: neither podman nor docker found (install one, or set CONTAINER_ENGINE)" >&2
  exit 1
fi
if [ ! -s "$ca" ]; then
  echo "error: no CA roots at $ca (install ca-certificates, or set CA_BUNDLE)" >&2
  exit 1
fi
target="$(rustc -vV | sed -n 's/^host: //p')"
case "$target" in
  *-linux-gnu) ;;
  *) echo "error: build on Linux with glibc (this host is $target)" >&2; exit 1 ;;
esac

# --target keeps the static flag away from build scripts and proc macros. The simulator (the
# 'demo' feature) is for development; the image carries the daemon only.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --no-default-features --target "$target" \
  --config profile.release.strip=true

ctx=target/container
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/state"
cp "target/$target/release/jellydemon" "$ctx/rootfs/usr/local/bin/jellydemon"
cp "$ca" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 0700 "$ctx/state"
cp packaging/container/Containerfile "$ctx/Containerfile"

# podman writes OCI images by default, which have no HEALTHCHECK; docker's format keeps it.
format=()
case "$(basename "$engine")" in podman*) format=(--format docker) ;; esac
"$engine" build "${format[@]}" -t "$image" -f "$ctx/Containerfile" "$ctx"
echo "built $image"
