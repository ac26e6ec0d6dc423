"""What an operator sees of the running server: Prometheus metrics and OpenTelemetry traces."""
