"""Clients of outside systems: SMS, calendars, CRM, webhooks."""
