"""kube-apiserver's command line as the real programs read it: the shell (`sh -c`), the kubelet's `$(VAR)`
expansion, the wrappers that run the binary, pflag's flag rules, and image references."""
