"""botguard.features."""
