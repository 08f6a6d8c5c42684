#!/usr/bin/env bash
# Test set-up only (scripts/test.sh runs it; packaging/install-deps.sh, the user's set-up, does not): Debian's Slurm
# and munge, for tests/cluster/test_slurm.sh, which starts its own single-node cluster from them. The daemons are not
# started here: Debian's packages do not start them in a container without an init system (policy-rc.d), and the
# test runs them with its own configuration, sockets and ports.
# Without root (or sudo) or a package mirror, this says so and the test skips (exit 77).
set -uo pipefail
PACKAGES=(munge slurmctld slurmd slurm-client)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo > /dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "install-slurm: not root: the Slurm test will be skipped (install ${missing[*]} to run it)"; exit 0
  fi
fi
echo "install-slurm: installing ${missing[*]} (test dependency)"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null 2>&1; then
  $SUDO apt-get update -qq > /dev/null 2>&1
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null 2>&1 ||
    echo "install-slurm: could not install ${missing[*]}: the Slurm test will be skipped"
fi
exit 0
