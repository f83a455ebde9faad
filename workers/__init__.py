"""The Celery application: app, config, beat schedule and thin task entrypoints."""
