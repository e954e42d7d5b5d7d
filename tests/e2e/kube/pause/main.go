// Command pause is the node suite's sandbox ("pause") image: it holds a pod's namespaces and waits for the
// kubelet to stop it, as registry.k8s.io/pause does, without a registry. Built static, run FROM scratch.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
