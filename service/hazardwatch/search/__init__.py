"""Search over stored keyframes and events (issue 26)."""
