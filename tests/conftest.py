"""Shared pytest setup: makes `harness` importable for every test directory under tests/."""
