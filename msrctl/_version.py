"""The package version; dkms/VERSION is the source, a test checks they agree."""

__version__ = "0.2.0"
