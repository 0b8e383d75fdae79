"""imgrec: a self-hosted Image Recognition service and a catalog-tagging pipeline sharing one contract."""
__version__ = "0.1.0"
