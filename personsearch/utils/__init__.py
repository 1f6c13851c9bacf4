"""Utilities shared across personsearch (collectives, drawing)."""
