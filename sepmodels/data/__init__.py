"""Datasets and audio input/output."""
