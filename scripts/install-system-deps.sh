#!/usr/bin/env bash
# Install the system tools the tests, demo and benchmarks drive, and only the
# missing ones: with everything present this is a handful of `command -v`
# calls and no apt-get at all (make install re-runs it freely).
set -euo pipefail

# package:command-that-proves-it
wanted=(
  iproute2:ip
  ethtool:ethtool
  iputils-ping:ping
  tcpdump:tcpdump
  tshark:tshark
  hping3:hping3
  nmap:nmap
  curl:curl
  netcat-openbsd:nc
  apache2-utils:ab
  wrk:wrk
  nginx:nginx
  gcc:gcc
  make:make
)

missing=()
# The C headers of the Python that compiles the core (make install passes its
# venv's): without them mypyc's C cannot be built and ustack stays pure.
python=${PYTHON:-python3}
if ! "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=(python3-dev)
fi
for entry in "${wanted[@]}"; do
  pkg=${entry%%:*}
  cmd=${entry#*:}
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("$pkg")
  elif [[ $pkg == netcat-openbsd ]] && ! nc -h 2>&1 | grep -qi openbsd; then
    # Another netcat lacks -N/-q/-U as the tests use them.
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system deps: all present"
  exit 0
fi

echo "system deps: installing ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get here; install these by hand: ${missing[*]}" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-system-deps: not root and no sudo; install: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# tshark's wireshark-common asks whether non-root users may capture; answer
# "no" up front so the install never stops at a prompt.
if [[ " ${missing[*]} " == *" tshark "* ]] && command -v debconf-set-selections >/dev/null; then
  echo "wireshark-common wireshark-common/install-setuid boolean false" \
    | "${sudo[@]}" debconf-set-selections
fi

echo "+ apt-get update"
"${sudo[@]}" apt-get update -qq
echo "+ apt-get install ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends "${missing[@]}"
# bench_http runs nginx itself (its own nginx.conf, one worker, in a network
# namespace); a system nginx service would hold port 80 on the host. Only an
# nginx installed just now is stopped and disabled, never one that was there.
if [[ " ${missing[*]} " == *" nginx "* ]]; then
  echo "+ stop and disable the nginx service (bench_http starts its own nginx)"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl stop nginx.service || true
  elif [[ -x /etc/init.d/nginx ]]; then
    "${sudo[@]}" /etc/init.d/nginx stop || true
  fi
  # Both boot paths: the unit's symlink is made even where systemd is not
  # running (systemctl disable edits links offline, and the SysV ones too).
  if command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl disable nginx.service || true
  elif command -v update-rc.d >/dev/null 2>&1; then
    "${sudo[@]}" update-rc.d nginx disable || true
  fi
fi
echo "system deps: done"
