// Standard library only: no requirements. go.sum is committed empty (what `go mod tidy` leaves) so that every wrapper module carries one and a fresh clone verifies the same (empty) set.
module apiserver-tls-guard/tests/e2e/kube/pause

go 1.26.0
