#!/bin/sh
# Regenerates go.mod for a Kubernetes version: k8s.io/kubernetes replaces every staging module with a path inside
# its own tree, so a consumer must replace each one with the published module at the matching v0.x version.
# The list comes from the real go.mod of that version, never typed by hand.
set -eu
KUBE_VERSION=${1:?usage: gen-go-mod.sh v1.37.2}
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
cd "$(dirname "$0")"
MOD=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module apiserver-tls-guard/tests/e2e/kube/k8s"
  echo
  echo "go $(sed -n 's/^go //p' "$MOD")"
  echo
  sed -n 's/^godebug /godebug /p' "$MOD"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$MOD"
  echo ")"
} > go.mod
go mod tidy
