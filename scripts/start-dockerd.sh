#!/usr/bin/env bash
# Start a Docker engine for forge's tests and benchmarks, unless one already answers.
#
# Idempotent and safe to run from several processes at once (an flock serialises the starters; the
# second finds the first's engine answering and returns). The engine is left running for everyone
# on the machine: other test sessions may be using it. Stop it with `kill $(cat /var/run/docker.pid)`.
#
# Usage: scripts/start-dockerd.sh        (as root; exit 0 once `docker info` answers)
# Env:   FORGE_DOCKERD_LOG   log file (default /var/log/forge-dockerd.log)
#        FORGE_DOCKERD_WAIT  seconds to wait for the engine to answer (default 90)
#        DOCKER_HOST         honoured when checking; a fresh engine listens on the default socket
#
# Flags, and why (what this sandbox needs: a VM with cgroup v1, no systemd, an ext4 root, nftables):
#   --storage-driver   overlay2 when the kernel has overlayfs and /var/lib/docker is not itself on
#                      overlayfs (overlay on overlay fails); vfs otherwise (slow, copies, but works
#                      anywhere, e.g. inside another container).
#   --exec-opt native.cgroupdriver=cgroupfs
#                      PID 1 here is not systemd, so the systemd cgroup driver cannot work.
#   --iptables=false   only when iptables cannot list the filter table (no netfilter, or no
#                      privilege for it). The bridge still comes up and `-p` still works through
#                      docker-proxy (the userland proxy); only NAT to the outside is lost, which
#                      nothing here needs (no image can be pulled: FROM scratch, load, import only).
#   --log-level=warn   20.10 logs every gRPC state change at info.
#   setsid nohup       the engine outlives the shell or pytest process that started it.
set -euo pipefail

log=${FORGE_DOCKERD_LOG:-/var/log/forge-dockerd.log}
wait_s=${FORGE_DOCKERD_WAIT:-90}

answering() {
  if command -v docker >/dev/null 2>&1; then
    timeout 20 docker info >/dev/null 2>&1
  else
    sock=${DOCKER_HOST:-unix:///var/run/docker.sock}; sock=${sock#unix://}
    timeout 20 curl -sf --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
  fi
}

answering && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "start-dockerd: no Docker engine answers, and starting one needs root. Start Docker yourself" \
       "(e.g. 'sudo systemctl start docker') or set DOCKER_HOST to an engine you can reach." >&2
  exit 2
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "start-dockerd: dockerd is not installed. Install it (Debian/Ubuntu: 'apt-get install docker.io'," \
       "or scripts/bootstrap.sh --test)." >&2
  exit 2
fi

mkdir -p "$(dirname "$log")" /var/lib/docker /var/run
exec 9>/var/run/forge-dockerd.lock
flock -w "$wait_s" 9 || { echo "start-dockerd: another start is stuck holding /var/run/forge-dockerd.lock" >&2; exit 1; }
answering && exit 0

flags=(--exec-opt native.cgroupdriver=cgroupfs --log-level=warn)
if grep -qw overlay /proc/filesystems && [ "$(stat -f -c %T /var/lib/docker)" != overlayfs ]; then
  flags+=(--storage-driver=overlay2)
else
  flags+=(--storage-driver=vfs)
fi
if ! iptables -n -L >/dev/null 2>&1; then
  flags+=(--iptables=false --ip6tables=false)
fi

# A pid file left by an engine that died would make dockerd refuse to start.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi
# A stale socket with no engine behind it would be reused and never answer.
if [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] && ! [ -f /var/run/docker.pid ]; then
  rm -f /var/run/docker.sock
fi

echo "=== $(date -u +%FT%TZ) start-dockerd: dockerd ${flags[*]}" >>"$log"
setsid nohup dockerd "${flags[@]}" >>"$log" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 "$wait_s"); do
  if answering; then
    echo "start-dockerd: Docker engine up (pid $pid, log $log)"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "start-dockerd: dockerd exited during start-up; the end of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  sleep 1
done
echo "start-dockerd: dockerd (pid $pid) did not answer within ${wait_s}s; the end of $log:" >&2
tail -n 25 "$log" >&2
exit 1
