//go:build tools

// Package tools pins Kyverno's admission controller, a peer the benchmark (benchmarks/peers) runs beside the
// product on the same kube-apiserver; nothing here is in the product.
package tools

import (
	_ "github.com/kyverno/kyverno/cmd/kyverno"
)
