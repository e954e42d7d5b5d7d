"""The admission.k8s.io/v1 contract: reading a review, the named response constructors, the mode decision,
and the ASGI app that serves `/validate`."""
