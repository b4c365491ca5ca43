"""Fixtures: a fake Slack Web API server for the real slack-sdk (filled in by the notify work)."""
