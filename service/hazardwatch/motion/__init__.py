"""The motion gate and snippet sampling: which frames are worth a CLIP look."""
