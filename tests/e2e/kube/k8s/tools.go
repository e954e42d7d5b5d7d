//go:build tools

// Package tools pins the Kubernetes commands the end-to-end suite builds; nothing here is compiled into the product.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubeadm"
)
