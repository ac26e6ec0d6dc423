"""Usage and cost of every model call, per user, request or run, role and model."""
