#!/usr/bin/env python3
"""Fills a PDF form (a fixture: does nothing)."""
print("filled")
