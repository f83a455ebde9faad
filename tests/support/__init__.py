"""Helpers shared by tests: local servers and builders. Never imported by feedwatch itself."""
