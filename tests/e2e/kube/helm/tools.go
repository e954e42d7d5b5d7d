//go:build tools

// Package tools pins the helm and actionlint commands the test suite builds; nothing here is in the product.
package tools

import (
	_ "github.com/rhysd/actionlint/cmd/actionlint"
	_ "helm.sh/helm/v3/cmd/helm"
)
