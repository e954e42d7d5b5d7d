"""The product beside Kyverno, Gatekeeper and ValidatingAdmissionPolicy on one real kube-apiserver (issue 26)."""
