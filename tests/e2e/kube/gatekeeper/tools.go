//go:build tools

// Package tools pins Gatekeeper (its main package is the module root), a peer the benchmark (benchmarks/peers)
// runs beside the product on the same kube-apiserver; nothing here is in the product.
package tools

import (
	_ "github.com/open-policy-agent/gatekeeper/v3"
)
