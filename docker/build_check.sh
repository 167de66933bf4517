#!/usr/bin/env bash
# Build the repository's Dockerfile with podman and check the image answers: health endpoint, the bundled offline
# backbone and dataset, one page render through the image's Python. Ends with `docker smoke ok` or the failure.
#
#   bash docker/build_check.sh                 # the default image (the lock's torch from PyPI)
#   GIST_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash docker/build_check.sh   # CPU-only torch
#
# Settings (environment):
#   GIST_IMAGE            tag to build (default gist-studio:check)
#   GIST_BASE             base image (default python:3.11-slim). If it is not present and cannot be pulled, a local
#                         equivalent is made: Debian bookworm (debootstrap --variant=minbase) with Debian's Python 3.11
#                         in a venv at /opt/venv on PATH, imported as localhost/gist-python:3.11-bookworm.
#   GIST_TORCH_INDEX_URL  passed as --build-arg TORCH_INDEX_URL (CPU-only torch wheels); empty: PyPI's torch
#   GIST_NO_CACHE=1       build without podman's layer cache (a cold build)
#   GIST_KEEP_IMAGE=0     remove the built image at the end (default: keep it)
#   GIST_HEALTH_TIMEOUT   seconds to wait for the health answer (default 120)
#
# The build needs the package registries as this machine reaches them: every pip configuration file that exists
# here, and the local files those name (CA bundle, constraints, wheel folders, file:// indexes), are bind-mounted
# READ-ONLY into the build's RUN steps at the same paths. They are never copied into a layer; the script checks the
# image afterwards and fails if any of them left a trace.
#
# Runs as root (podman, debootstrap, chroot, mount). Installs podman and debootstrap from Debian's packages if missing.
set -euo pipefail

# One function, called on the last line: bash reads the whole file before running any of it, so an edit to this file
# while it runs cannot change what runs.
main() {
cd "$(dirname "$0")/.."

IMAGE="${GIST_IMAGE:-gist-studio:check}"
BASE="${GIST_BASE:-python:3.11-slim}"
LOCAL_BASE="localhost/gist-python:3.11-bookworm"
TORCH_INDEX_URL="${GIST_TORCH_INDEX_URL:-}"
HEALTH_TIMEOUT="${GIST_HEALTH_TIMEOUT:-120}"
log() { printf '[build_check] %s\n' "$*"; }
fail() { printf 'docker smoke FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (podman build, chroot and mount need it)"

# ---- 1. tools ---------------------------------------------------------------------------------------------------
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v fuse-overlayfs >/dev/null 2>&1 || need+=(fuse-overlayfs)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
log "$(podman --version)"

# ---- 2. the base image ------------------------------------------------------------------------------------------
make_local_base() {
  local root mirror
  root="$(mktemp -d /var/tmp/gist-base.XXXXXX)"
  mirror="$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' /etc/apt/sources.list.d/*.sources \
            /etc/apt/sources.list 2>/dev/null || true)"
  log "making $LOCAL_BASE: debootstrap --variant=minbase bookworm from ${mirror:-the default mirror of debootstrap}"
  # shellcheck disable=SC2086  # no mirror: debootstrap's own default
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root/rootfs" $mirror \
    >"$root/debootstrap.log" 2>&1 || { tail -20 "$root/debootstrap.log" >&2; fail "debootstrap failed"; }
  chroot "$root/rootfs" /usr/bin/python3 -m venv /opt/venv
  rm -rf "$root"/rootfs/var/cache/apt/archives/*.deb "$root"/rootfs/var/lib/apt/lists/*
  # python:3.11-slim's shape: Python and pip first on PATH, UTF-8, `python3` as the command.
  tar -C "$root/rootfs" -c . | podman import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "Debian bookworm minbase + Debian's Python 3.11 in a venv on PATH (python:3.11-slim stand-in)" \
    - "$LOCAL_BASE" >/dev/null
  rm -rf "$root"
}

if podman image exists "$BASE"; then
  log "base: $BASE (present)"
elif timeout 60 podman pull -q "$BASE" >/dev/null 2>&1; then
  log "base: $BASE (pulled)"
elif [ "$BASE" = "python:3.11-slim" ]; then
  if podman image exists "$LOCAL_BASE"; then
    log "base: $LOCAL_BASE (made earlier; python:3.11-slim cannot be pulled here)"
  else
    t0=$(date +%s)
    make_local_base
    log "base: $LOCAL_BASE made in $(( $(date +%s) - t0 )) s (python:3.11-slim cannot be pulled here)"
  fi
  BASE="$LOCAL_BASE"
else
  fail "base image $BASE is neither present nor pullable"
fi
# The image's command runs by chroot below either way (the same check wherever root can mount); this only says
# whether `podman run` / `docker run` would work on this machine too.
if podman run --rm --entrypoint python3 "$BASE" --version >/dev/null 2>&1; then
  log "container runtime: podman run works here; the check runs the image by chroot all the same"
else
  log "container runtime: podman run cannot start containers here; the check runs the image by chroot"
fi

# ---- 3. this machine's pip settings, mounted read-only into the build ---------------------------------------------
mounts=()
mounted=()
declare -A seen=()
add_mount() {  # a local file or folder at the same path inside the build, read-only
  local path="$1"
  path="${path#file://}"
  [ -e "$path" ] || return 0
  [ -z "${seen[$path]:-}" ] || return 0
  seen[$path]=1
  mounts+=(-v "$(readlink -f "$path"):$path:ro")
  mounted+=("$path")
}
while IFS= read -r line; do
  case "$line" in
    *", exists: True") add_mount "$(sed -E 's/^ *(.*), exists: True$/\1/' <<<"$line")" ;;
    *.cert:*|*.constraint:*|*.find-links:*|*.index-url:*|*.extra-index-url:*|*.requirement:*|*.client-cert:*)
      for value in $(sed -E "s/^[^:]*: *//; s/^'//; s/'$//" <<<"$line"); do
        value="${value#file://}"
        # a local PEP 503 index links its files relative to itself (../../files/...): mount the folder above simple/
        case "$line" in *index-url:*) [ "$(basename "$value")" != simple ] || value="$(dirname "$value")" ;; esac
        case "$value" in /*) add_mount "$value" ;; esac
      done ;;
  esac
done < <(python3 -m pip config debug 2>/dev/null | sed -n '/^global:/,$p')
case "$TORCH_INDEX_URL" in  # a local index of torch wheels: the folder above its simple/ too
  file://*) index="${TORCH_INDEX_URL#file://}"; index="${index%/}"
            [ "$(basename "$index")" != simple ] || index="$(dirname "$index")"; add_mount "$index" ;;
esac
log "read-only into the build: ${mounted[*]:-nothing, pip defaults}"

# ---- 4. build ---------------------------------------------------------------------------------------------------
build_args=(--build-arg "BASE=$BASE")
[ -z "$TORCH_INDEX_URL" ] || build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
[ "${GIST_NO_CACHE:-0}" != 1 ] || build_args+=(--no-cache)
work="$(mktemp -d /var/tmp/gist-check.XXXXXX)"
podman images -a -q --no-trunc | sort -u >"$work/images.before"  # GIST_KEEP_IMAGE=0 removes only what this run adds
cid=""; base_cid=""; root=""; server=""; mnt=(); passed=0
cleanup() {
  set +e
  [ -z "$server" ] || { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
  for ((j = ${#mnt[@]} - 1; j >= 0; j--)); do umount -l "${mnt[j]}" 2>/dev/null; done
  [ -z "$cid" ] || podman rm -f "$cid" >/dev/null 2>&1
  [ -z "$base_cid" ] || podman rm -f "$base_cid" >/dev/null 2>&1
  if [ "${GIST_KEEP_IMAGE:-1}" = 0 ]; then  # the image and the build's cache layers that this run made
    podman rmi -f "$IMAGE" >/dev/null 2>&1
    comm -13 "$work/images.before" <(podman images -a -q --no-trunc | sort -u) | xargs -r podman rmi -f >/dev/null 2>&1
  fi
  [ "$passed" != 1 ] || rm -rf "$work"  # the logs are kept only when something failed
}
trap cleanup EXIT
# --format docker: the OCI image format has no HEALTHCHECK (podman would drop it with a warning).
log "podman build --isolation chroot --format docker ${build_args[*]} -t $IMAGE . (log: $work/build.log)"
t0=$(date +%s)
if ! podman build --isolation chroot --format docker "${build_args[@]}" "${mounts[@]}" -t "$IMAGE" . >"$work/build.log" 2>&1; then
  tail -30 "$work/build.log" >&2
  fail "podman build failed (full log: $work/build.log)"
fi
build_s=$(( $(date +%s) - t0 ))
# The requirements step is the first RUN; podman prints "--> Using cache" right after a step it did not run.
req_layer=$(awk '/^STEP [0-9]+\/[0-9]+: RUN .*requirements\.txt/ {step=1; next}
                 step && /Using cache/ {print "cached"; exit}
                 step && /^STEP / {print "built"; exit}' "$work/build.log")
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")

# ---- 5. a container of the image, its file system mounted here ----------------------------------------------------
cid=$(podman create "$IMAGE")
root=$(podman mount "$cid")
base_cid=$(podman create "$BASE")
base_root=$(podman mount "$base_cid")

# Nothing of this machine's pip settings or certificates in the image: every mounted path is as in the base image.
for path in "${mounted[@]}"; do
  if [ -d "$path" ]; then
    [ -z "$(ls -A "$root$path" 2>/dev/null)" ] || fail "the image carries $path (mounted into the build)"
  elif [ -s "$root$path" ] && ! cmp -s "$root$path" "$base_root$path"; then
    fail "the image carries this machine's $path (mounted into the build)"
  fi
done
log "no trace of the build's mounts in the image (${#mounted[@]} paths compared with the base)"

# The image's configuration: user, working directory, environment, command, health check.
eval "$(podman image inspect "$IMAGE" | python3 -c '
import json, shlex, sys
image = json.load(sys.stdin)[0]
c = image["Config"]
print("img_user=" + shlex.quote(c.get("User") or "root"))
print("img_workdir=" + shlex.quote(c.get("WorkingDir") or "/"))
print("img_env=(" + " ".join(shlex.quote(e) for e in c.get("Env") or []) + ")")
print("img_cmd=(" + " ".join(shlex.quote(a) for a in (c.get("Entrypoint") or []) + (c.get("Cmd") or [])) + ")")
hc = (c.get("Healthcheck") or image.get("Healthcheck") or {}).get("Test") or []  # docker: in Config; podman: beside
print("img_health=(" + " ".join(shlex.quote(a) for a in hc[1:]) + ")")
print("img_health_kind=" + shlex.quote(hc[0] if hc else "NONE"))
')"
[ "$img_user" != root ] && [ "$img_user" != 0 ] || fail "the image runs as root"
uid_gid=$(awk -F: -v u="$img_user" '$1 == u || $3 == u {print $3 ":" $4; exit}' "$root/etc/passwd")
[ -n "$uid_gid" ] || fail "user $img_user is not in the image's /etc/passwd"
home=$(awk -F: -v u="$img_user" '$1 == u || $3 == u {print $6; exit}' "$root/etc/passwd")

for fs in proc sys dev; do
  mkdir -p "$root/$fs"
  case "$fs" in
    proc) mount -t proc proc "$root/proc" ;;
    *) mount --rbind "/$fs" "$root/$fs"; mount --make-rslave "$root/$fs" ;;
  esac
  mnt+=("$root/$fs")
done

# Run a command in the image as its user, with its environment, in its working directory.
in_image() {
  chroot --userspec="$uid_gid" "$root" /usr/bin/env -i "${img_env[@]}" HOME="$home" USER="$img_user" \
    /bin/sh -c 'cd "$0" && exec "$@"' "$img_workdir" "$@"
}

# The host shares its network with the chroot: serve on a free port of 127.0.0.1 instead of 0.0.0.0:8501.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cmd=()
for arg in "${img_cmd[@]}"; do
  case "$arg" in
    --server.port=*) cmd+=("--server.port=$port") ;;
    --server.address=*) cmd+=("--server.address=127.0.0.1") ;;
    *) cmd+=("$arg") ;;
  esac
done
health=()
for arg in "${img_health[@]}"; do health+=("${arg//:8501\//:$port/}"); done

# ---- 6. start the image's command; wait for the health endpoint ---------------------------------------------------
log "starting the image's command as $img_user ($uid_gid) in $img_workdir: ${cmd[*]}"
t0=$(date +%s.%N)
in_image "${cmd[@]}" >"$work/server.log" 2>&1 &
server=$!
healthy=""
while :; do
  if curl -fsS -m 2 "http://127.0.0.1:$port/_stcore/health" 2>/dev/null | grep -qx ok; then
    healthy=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')"); break
  fi
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; fail "the image's command exited before answering"; }
  [ "$(python3 -c "import time; print(int(time.time() - $t0))")" -lt "$HEALTH_TIMEOUT" ] \
    || { cat "$work/server.log" >&2; fail "no health answer within $HEALTH_TIMEOUT s"; }
  sleep 0.2
done
log "health: ok after $healthy s (GET http://127.0.0.1:$port/_stcore/health)"
case "$img_health_kind" in
  CMD-SHELL) in_image /bin/sh -c "${health[*]}" || fail "the image's HEALTHCHECK command failed" ;;
  CMD) in_image "${health[@]}" || fail "the image's HEALTHCHECK command failed" ;;
  *) fail "the image has no HEALTHCHECK (found: $img_health_kind)" ;;
esac
log "the image's HEALTHCHECK command: exit 0"

# ---- 7. the bundled backbone and dataset, one page render, through the image's Python -----------------------------
cp docker/smoke.py "$root/tmp/gist_smoke.py"
chmod 0644 "$root/tmp/gist_smoke.py"
in_image python /tmp/gist_smoke.py 2>&1 | tee "$work/smoke.log" | sed 's/^/[image] /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "smoke checks in the image: $(tail -1 "$work/smoke.log")"
if grep -q Traceback "$work/server.log"; then cat "$work/server.log" >&2; fail "the server logged a traceback"; fi

# ---- 8. figures ---------------------------------------------------------------------------------------------------
python3 - "$IMAGE" "$BASE" "$size" "$build_s" "${req_layer:-unknown}" "$healthy" "${TORCH_INDEX_URL:-PyPI}" <<'PY'
import sys
image, base, size, build_s, req, healthy, torch_from = sys.argv[1:]
print(f"image: {image} on {base}, torch from {torch_from}")
print(f"image size: {int(size) / 1e9:.2f} GB ({int(size):,} bytes, uncompressed)")
print(f"build time: {int(build_s) // 60} min {int(build_s) % 60:02d} s (requirements layer {req})")
print(f"time to health: {healthy} s from starting the image's command")
PY
passed=1
echo "docker smoke ok"
}

main "$@"; exit
