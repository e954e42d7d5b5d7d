//go:build tools

// Package tools pins the Kubernetes commands the end-to-end suite builds; nothing here is compiled into the product.
// kubelet, kube-proxy and kube-scheduler run the node of tests/e2e/node.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
