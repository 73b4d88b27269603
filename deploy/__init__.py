"""Deployment artefacts: KubeRay manifests rendered from the Serve configs."""
