"""Tests of stage three: tables and plots from run records."""
