"""What every model shares: the model registry of versioned artefacts."""
