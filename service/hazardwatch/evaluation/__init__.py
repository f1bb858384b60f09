"""Offline evaluation: score matrices, labelled images and videos, through the live detector."""
