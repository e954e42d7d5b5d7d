//go:build tools

// Package tools pins the etcd server the end-to-end suite builds. It lives apart from the Kubernetes module
// because the two pull different grpc and OpenTelemetry versions.
package tools

import _ "go.etcd.io/etcd/server/v3"
