"""Judge implementations; each kind is loaded lazily through judge.registry."""
