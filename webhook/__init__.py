"""apiserver-tls-guard: keeps kube-apiserver honest about TLS, at admission and before a cluster exists."""

__version__ = "0.1.0"
