#!/bin/sh
# install-deps.sh — install what trmml needs from Debian 12 packages (called by the Makefile and
# .ci/run; safe to rerun). --torch also installs python3-torch, used only to regenerate fixtures
# and for the PyTorch side of benchmarks; --fuzz also installs clang for `make fuzz`.
set -e
# libcairo2-dev and fonts-dejavu-core: the plots (trmml/plot.h, docs/plots.md).
pkgs="make gcc libopenblas-openmp-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev libexpat1-dev libyajl-dev"
pkgs="$pkgs libcairo2-dev libfontconfig-dev fonts-dejavu-core"
# openmpi-bin and libopenmpi-dev: several processes under mpirun (tensor/dist.h,
# docs/distributed.md); optional at build time (make MPI=0).
pkgs="$pkgs openmpi-bin libopenmpi-dev"
[ "$1" = "--torch" ] && pkgs="$pkgs python3-torch python3-numpy"
# make fuzz: clang and its libFuzzer/sanitizer runtime.
[ "$1" = "--fuzz" ] && pkgs="$pkgs clang libclang-rt-14-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >&2
