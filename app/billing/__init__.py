"""Billing with Stripe: checkout, the subscription, and the webhook that moves the tier."""
