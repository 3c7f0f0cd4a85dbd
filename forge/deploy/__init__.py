"""Deployment targets: generated projects that ship a forge image to an edge platform."""
