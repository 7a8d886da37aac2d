"""botguard.model."""
