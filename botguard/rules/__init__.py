"""botguard.rules."""
