"""The service's rules, independent of HTTP: what may be uploaded, by whom, and what it becomes."""
