"""Outbound webhook delivery (being built: see apps/webhooks)."""
