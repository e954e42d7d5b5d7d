//go:build tools

// Package tools pins runc, the OCI runtime containerd's shim runs for the node suite (tests/e2e/node).
package tools

import _ "github.com/opencontainers/runc"
