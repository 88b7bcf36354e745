#!/usr/bin/env bash
# Builds the operator's container image without a Docker daemon and without pulling anything:
# the release binary (cargo build --release --locked), then with buildah an image FROM SCRATCH
# with the layout of the Dockerfile's runtime stage (gcr.io/distroless/cc-debian12:nonroot):
#
#   /usr/local/bin/thalassa-secrets-operator   the binary, 0555
#   the shared libraries it links and the dynamic loader, at the paths `ldd` names
#   /etc/ssl/certs/ca-certificates.crt         the host's CA bundle (package ca-certificates)
#   /etc/passwd, /etc/group                    root (0) and nonroot (65532)
#   /etc/nsswitch.conf                         hosts: files dns
#   USER 65532:65532, EXPOSE 8080/tcp, ENTRYPOINT ["/usr/local/bin/thalassa-secrets-operator"],
#   the Dockerfile's OCI labels plus revision (git commit) and created.
#
# Everything is owned by root and nothing is writable by the user the image runs as.
# Writes a docker-archive (`ctr -n k8s.io images import`, `kind load image-archive`,
# `skopeo copy docker-archive:...` keep its name) and prints its path as the LAST line of stdout;
# progress, timings and sizes go to stderr. tests/offline/image.rs checks the result against the
# Dockerfile.
#
#   tools/build-image.sh                  # -> <target>/image/thalassa-secrets-operator-<version>.tar
#   IMAGE_REF=registry.example/tso:dev tools/build-image.sh   # another name:tag inside the archive
#
# Honours CARGO_TARGET_DIR (and any other way cargo is told its target directory); buildah's
# storage lives in <target>/image/buildah, never in /var/lib/containers, so `cargo clean` removes
# it. Running it twice is safe: each run starts from an empty container and replaces the archive.
# SOURCE_DATE_EPOCH, if set, is used for the created label and the layer's timestamps.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Run from a test (cargo test sets these for the test process), the release build would see
# another environment than from a shell: ring's build script reruns when CARGO_MANIFEST_DIR
# changes, and with it everything above ring. Drop what cargo sets per package, so the build is
# the same, and incremental, whoever calls this. CARGO_HOME, CARGO_TARGET_DIR etc. stay.
unset CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH CARGO_CRATE_NAME CARGO_PRIMARY_PACKAGE \
  CARGO_TARGET_TMPDIR CARGO_BIN_NAME OUT_DIR
for var in $(compgen -v CARGO_PKG_) $(compgen -v CARGO_BIN_EXE_); do unset "$var"; done

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# Seconds since `start` (an $EPOCHREALTIME value), with one decimal.
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# Bytes as MiB with one decimal.
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }

# ---- prerequisites ----
# buildah is the one tool beyond cargo, python3, gzip and ldd (libc-bin). On Debian and Ubuntu
# it is one package; install it when we may (root), otherwise say what is missing.
if ! command -v buildah >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "buildah is missing: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends buildah >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends buildah >&2; }
  else
    die "buildah is not installed; install it (Debian/Ubuntu: apt-get install buildah) or run this as root"
  fi
fi
for tool in cargo ldd python3 gzip; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done

# The crate version and the target directory, as cargo sees them (CARGO_TARGET_DIR, .cargo/config).
read -r version target_dir < <(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
pkg = next(p for p in meta["packages"] if p["name"] == "thalassa-secrets-operator")
print(pkg["version"], meta["target_directory"])')
[ -n "$version" ] && [ -n "$target_dir" ] || die "cargo metadata gave no version or target directory"

image_ref=${IMAGE_REF:-localhost/thalassa-secrets-operator:$version}
out_dir="$target_dir/image"
archive="$out_dir/thalassa-secrets-operator-$version.tar"
rootfs="$out_dir/rootfs"
store="$out_dir/buildah"
binary_path=/usr/local/bin/thalassa-secrets-operator

# The commit the image is built from; a tree with uncommitted changes is marked, so an image is
# never mistaken for the commit's own build.
if revision=$(git -C "$root" rev-parse HEAD 2>/dev/null); then
  if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    log "warning: the work tree has uncommitted changes; revision label is $revision-dirty"
    revision="$revision-dirty"
  fi
else
  revision=unknown
fi
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi

# ---- 1. the release binary ----
log "release build (cargo build --release --locked --bin thalassa-secrets-operator)"
start=$EPOCHREALTIME
cargo build --release --locked --bin thalassa-secrets-operator >&2
build_seconds=$(elapsed "$start")
binary="$target_dir/release/thalassa-secrets-operator"
[ -x "$binary" ] || die "cargo built no $binary"
log "release build: ${build_seconds}s"

# ---- 2. the root filesystem, staged in a directory ----
# Staged first and copied into the container in one step: the layout is plain files we can
# check with ls, and buildah needs no mount of the container (which a rootless run could not do).
start=$EPOCHREALTIME
rm -rf "$rootfs"
mkdir -p "$rootfs"
install -D -m 0555 "$binary" "$rootfs$binary_path"

# Every shared object the binary loads, at the path the loader looks for it (ldd's right-hand
# side, and the loader itself, the binary's PT_INTERP, on a line of its own). The file is copied,
# not the host's symlink, since the image has none of the host's /lib -> usr/lib links.
libs=$(ldd "$binary" | awk '
  /not found/ { print "MISSING " $1; next }
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }')
if grep -q '^MISSING ' <<<"$libs"; then die "ldd cannot resolve: $(grep '^MISSING ' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')"; fi
[ -n "$libs" ] || log "warning: ldd names no shared library (a static binary?)"
while read -r lib; do
  [ -n "$lib" ] || continue
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  log "  library $lib"
done <<<"$libs"

# CA certificates: the operator verifies Thalassa's and the API server's TLS with the native
# roots (rustls-native-certs), which read this bundle.
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || die "$ca is missing: install the ca-certificates package"
install -D -m 0644 "$ca" "$rootfs$ca"

# Users and groups as in distroless: root and nonroot (65532). nonroot has no home and no shell;
# the image has neither.
install -d -m 0755 "$rootfs/etc"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$rootfs/etc/group"
# glibc's default without this file asks DNS before /etc/hosts; Kubernetes' hosts file first.
printf '%s\n' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
find "$rootfs" -type d -exec chmod 0755 {} +

# ---- 3. the image ----
# A private vfs store under the target directory: nothing lands in the host's containers
# storage, vfs needs no kernel overlay support, and `cargo clean` removes it.
mkdir -p "$store"
bah() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

containers=()
smoke=
container=
cleanup() {
  local status=$? c
  # Remove the working containers even when a step failed, so the store never grows.
  for c in "${containers[@]}"; do bah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$rootfs" "$archive.partial"
  if [ "$status" != 0 ]; then log "failed (exit status $status); no archive written"; fi
}
trap cleanup EXIT

# A killed earlier run may have left containers or images in the private store: remove them.
bah rm --all >/dev/null 2>&1 || true
bah rmi --all --force >/dev/null 2>&1 || true

labels=(
  --label org.opencontainers.image.title=thalassa-secrets-operator
  --label "org.opencontainers.image.description=Syncs secrets from Thalassa Cloud Secrets Manager into Kubernetes Secrets"
  --label org.opencontainers.image.source=https://github.com/thalassa-cloud/thalassa-secrets-operator
  --label org.opencontainers.image.licenses=Apache-2.0
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.revision=$revision"
  --label "org.opencontainers.image.created=$created"
)

# A container FROM SCRATCH holding the staged root filesystem, configured as the Dockerfile's
# runtime stage; its name is the variable named by $1.
new_container() {
  local -n out=$1
  out=$(bah from scratch)
  containers+=("$out")
  bah copy --chown 0:0 "$out" "$rootfs/" / >/dev/null
  # The environment distroless sets: PATH, and where OpenSSL-style clients find the CA bundle.
  bah config \
    --user 65532:65532 \
    --entrypoint "[\"$binary_path\"]" \
    --port 8080/tcp \
    --workingdir / \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env "SSL_CERT_FILE=$ca" \
    --created-by "tools/build-image.sh" \
    "${labels[@]}" "$out"
}

# The image must start: run the binary inside a container of it, as its user, with nothing of
# the host. A throwaway container, because `buildah run` leaves its mount points (/proc, /sys,
# /dev, empty /etc/hosts, ...) in the container's filesystem. chroot isolation needs no runtime
# (runc/crun) and no network setup.
new_container smoke
if ! output=$(bah run --isolation chroot "$smoke" -- "$binary_path" --version 2>&1); then
  log "the binary does not start inside the image:"
  printf '%s\n' "$output" >&2
  exit 1
fi
log "inside the image: $output"
bah rm "$smoke" >/dev/null

new_container container
commit_args=(--rm --format docker)
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then commit_args+=(--timestamp "$SOURCE_DATE_EPOCH"); fi
rm -f "$archive" "$archive.partial"
bah commit "${commit_args[@]}" "$container" "docker-archive:$archive.partial:$image_ref" >&2
mv "$archive.partial" "$archive"
image_seconds=$(elapsed "$start")

# ---- report ----
archive_bytes=$(stat -c %s "$archive")
gzip_bytes=$(gzip -6 -c "$archive" | wc -c)
unpacked_bytes=$(python3 - "$archive" <<'EOF'
import json, sys, tarfile
# The sum of the file sizes in the image's layers: what the image takes once unpacked.
with tarfile.open(sys.argv[1]) as outer:
    manifest = json.load(outer.extractfile("manifest.json"))
    total = 0
    for layer in manifest[0]["Layers"]:
        with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
            total += sum(m.size for m in inner.getmembers() if m.isfile())
print(total)
EOF
)
log "image:    $image_ref"
log "archive:  $archive"
log "time:     release build ${build_seconds}s, image assembly ${image_seconds}s"
log "size:     archive $(mib "$archive_bytes") (gzip -6: $(mib "$gzip_bytes"), files unpacked: $(mib "$unpacked_bytes"))"
echo "$archive"
