"""botguard.sources."""
