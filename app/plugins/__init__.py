"""The plugin marketplace (SPEC §10): catalog, submission and review, installs, ratings
and the 70/30 revenue share."""
