"""Tiers: the plan matrix, request rate limits by plan and address, and downgrade effects."""
