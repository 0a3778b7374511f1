"""Test harness: real Envoy processes and real TLS/HTTP clients, nothing mocked."""
