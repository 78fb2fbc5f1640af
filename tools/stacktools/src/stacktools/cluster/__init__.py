"""What a cluster needs besides its processes: certificates, kubeconfigs, the pinned CRDs."""
