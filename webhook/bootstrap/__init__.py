"""Bootstrap configurations: the kube-apiserver command line an installer would generate, before a cluster exists.

`generated.py` is what every installer reduces to, `installers.py` holds each installer's own defaults (data, in
installers.yaml), `kubeadm.py` reads kubeadm, Cluster API and kind configurations, `k3s.py` reads k3s and RKE2
`config.yaml`. The engine judges the result as it judges any pod.
"""
