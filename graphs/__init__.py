"""Application builders: they only wire deployments together from validated args."""
