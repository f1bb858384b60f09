"""hazardwatch: real-time CCTV hazard monitoring with motion-gated CLIP scoring."""

__version__ = "0.1.0"
