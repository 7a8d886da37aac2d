"""botguard.sinks."""
