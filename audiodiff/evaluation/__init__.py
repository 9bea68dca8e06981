"""Quality metrics and reports."""
