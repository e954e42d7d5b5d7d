// Standard library only: no requirements, so `go mod tidy` writes no go.sum and nothing is resolved at build time.
module apiserver-tls-guard/tests/e2e/kube/pause

go 1.26.0
