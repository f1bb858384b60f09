"""Outputs: the event writer (database + snapshots); webhooks, MQTT and clips follow."""
