"""Studies: scripts that measure the samplers (not part of the package)."""
