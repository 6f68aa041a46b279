"""Helpers shared by test modules (unit and integration): import them from here, never from
another test module."""
