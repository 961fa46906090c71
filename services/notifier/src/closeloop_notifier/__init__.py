"""Notifier: turns cases into personalised, localised messages and delivers them over SMTP,
never twice, respecting opt-outs, with retries."""
