"""Access decisions: the hot path partner systems call before every exchange."""
