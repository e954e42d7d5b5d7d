"""A real one-node cluster for the end-to-end suite: the project's image, containerd, kubelet and kube-proxy."""
