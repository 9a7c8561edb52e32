"""Delivery: routing events to webhooks, retry schedules, signing, the senders, the egress
policy, the dispatcher."""
