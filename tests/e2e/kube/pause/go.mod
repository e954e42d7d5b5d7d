module apiserver-tls-guard/tests/e2e/kube/pause

go 1.26.0
