//go:build tools

// Package tools pins the container runtime of the node suite (tests/e2e/node): containerd, its CRI plugin, the
// runc shim and ctr. Apart from the Kubernetes module, whose containerd API and grpc versions differ.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
