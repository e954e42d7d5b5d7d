"""Commands that are neither serving nor judging: `review` (send one AdmissionReview) and `render` (manifests)."""
