"""Inkscribe's pipeline, one module per stage, no UI: ingest → detect → recognize → layout → store → export."""

__version__ = "0.10.11"
