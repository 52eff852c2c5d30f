"""Ethics reviews of agreement versions."""
