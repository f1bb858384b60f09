"""CLIP scoring: model loading, preprocessing, the prompt bank and the worker thread."""
