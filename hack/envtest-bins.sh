#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from the Go module proxy into bin/k8s (the directory
# envtest's KUBEBUILDER_ASSETS points at). The first build takes several minutes; Go's build
# cache makes a rebuild with nothing changed take about a second.
set -euo pipefail
cd "$(dirname "$0")/k8sbins"
out="$(cd ../.. && pwd)/bin/k8s"
mkdir -p "$out"
version=v1.37.2
pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
ldflags="-s -w"
for p in $pkgs; do
  ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=37 -X $p.gitTreeState=clean"
done
for bin in etcd kube-apiserver kubectl; do
  # go build is incremental: with nothing changed it only checks the build cache.
  [ -x "$out/$bin" ] || echo "envtest-bins: building $bin $version (the first build takes minutes)..."
  start=$(date +%s)
  go build -trimpath -ldflags "$ldflags" -o "$out/$bin" "./$bin"
  echo "envtest-bins: $bin $version ready ($(( $(date +%s) - start ))s)"
done
