"""ticlip core library."""
