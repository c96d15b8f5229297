"""The package version, in a module that imports nothing (read by io, fingerprints and manifests)."""
__version__ = "0.1.0"
