"""Tests of the ICSSI bot."""
